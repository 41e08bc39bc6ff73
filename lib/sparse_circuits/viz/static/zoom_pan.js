// Wheel zoom (about the pointer), drag pan and a reset for an SVG drawn with a viewBox. Plain script, no
// libraries: the offline HTML page inlines it and the notebook widget's module starts with it.
// scZoomPan(svg) returns reset(), which goes back to the viewBox in svg.dataset.home (set here if absent, so a
// redraw may change it); a click that ends a drag is swallowed, so panning never selects a node.
function scZoomPan(svg) {
  if (!svg.dataset.home) svg.dataset.home = svg.getAttribute("viewBox");
  const box = () => svg.getAttribute("viewBox").split(/[ ,]+/).map(Number);
  const show = (b) => svg.setAttribute("viewBox", b.join(" "));
  let drag = null, dragged = false;
  // viewBox units per screen pixel, and the offsets of the "xMidYMid meet" letterboxing
  const frame = (b) => {
    const r = svg.getBoundingClientRect();
    const s = Math.max(b[2] / r.width, b[3] / r.height);
    return { r, s, ox: (r.width - b[2] / s) / 2, oy: (r.height - b[3] / s) / 2 };
  };
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const b = box(), { r, s, ox, oy } = frame(b);
    const x = b[0] + (ev.clientX - r.left - ox) * s, y = b[1] + (ev.clientY - r.top - oy) * s;
    const f = Math.exp(Math.max(-1, Math.min(1, ev.deltaY * 0.002)));
    show([x - (x - b[0]) * f, y - (y - b[1]) * f, b[2] * f, b[3] * f]);
  }, { passive: false });
  svg.addEventListener("pointerdown", (ev) => {
    const b = box();
    drag = { x: ev.clientX, y: ev.clientY, b, s: frame(b).s };
    dragged = false;
  });
  window.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) dragged = true;
    if (dragged) show([drag.b[0] - dx * drag.s, drag.b[1] - dy * drag.s, drag.b[2], drag.b[3]]);
  });
  window.addEventListener("pointerup", () => { drag = null; });
  svg.addEventListener("click", (ev) => { if (dragged) { ev.stopPropagation(); dragged = false; } }, true);
  svg.style.cursor = "grab";
  return () => svg.setAttribute("viewBox", svg.dataset.home);
}
