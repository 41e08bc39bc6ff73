// The circuit graph of the notebook widget (anywidget module; scZoomPan comes first in the same module).
// Python sends the whole graph once ("data") and, on every change, which nodes and edges to show, which
// node is selected and which are lit (its upstream and downstream) or marked; a click sets "selected".
const SC_NS = "http://www.w3.org/2000/svg";

function scEl(name, attrs) {
  const e = document.createElementNS(SC_NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "sc-gw";
  const reset = document.createElement("button");
  reset.textContent = "reset view";
  const note = document.createElement("span");
  const svg = scEl("svg", {});
  const bar = document.createElement("div");
  bar.className = "sc-gw-bar";
  bar.append(reset, note);
  root.append(bar, svg);
  el.append(root);
  svg.setAttribute("viewBox", "0 0 1 1");
  const resetView = scZoomPan(svg);

  function draw() {
    const d = model.get("data");
    const nodes = d.nodes || [], edges = d.edges || [];
    const rowH = 34, left = 120, margin = 16;
    const perRow = {};
    nodes.forEach((n) => { perRow[n.y] = (perRow[n.y] || 0) + 1; });
    const width = Math.min(6000, Math.max(700, 9 * Math.max(1, ...Object.values(perRow)))) + left;
    const height = 2 * margin + Math.max(0, (d.rows || []).length - 1) * rowH;
    const X = (n) => left + n.x * (width - left - margin), Y = (n) => height - margin - n.y * rowH;
    svg.replaceChildren();
    const home = `0 0 ${width} ${height}`;
    if (svg.dataset.home !== home) {  // a new canvas: show it whole; otherwise keep the zoom across redraws
      svg.dataset.home = home;
      svg.setAttribute("viewBox", home);
    }
    (d.rows || []).forEach((name, r) => {
      const t = scEl("text", { x: 4, y: height - margin - r * rowH + 3, fill: "#444" });
      t.textContent = name;
      svg.append(t);
    });
    const shownNodes = new Set(model.get("shown_nodes")), lit = new Set(model.get("lit"));
    const marked = new Set(model.get("marked")), sel = model.get("selected");
    const top = {};
    edges.forEach((e) => { top[e.kind] = Math.max(top[e.kind] || 0, Math.abs(e.w)); });
    const g = scEl("g", {});
    for (const k of model.get("shown_edges")) {
      const e = edges[k], a = nodes[e.s], b = nodes[e.d];
      const on = !sel || (lit.has(e.s) && lit.has(e.d));
      const colour = e.kind === "qk" ? "#888888" : e.w >= 0 ? "#2166ac" : "#b2182b";
      const line = scEl("line", {
        x1: X(a), y1: Y(a), x2: X(b), y2: Y(b), stroke: colour,
        "stroke-width": top[e.kind] > 0 ? 0.3 + 2.2 * Math.abs(e.w) / top[e.kind] : 0.3,
        "stroke-opacity": on ? (sel ? 0.9 : 0.35) : 0.05,
      });
      if (e.kind === "qk") line.setAttribute("stroke-dasharray", "2,2");
      g.append(line);
    }
    svg.append(g);
    const labels = shownNodes.size <= d.label_limit;
    nodes.forEach((n, i) => {
      if (!shownNodes.has(i)) return;
      const chosen = n.id === sel;
      const c = scEl("circle", {
        cx: X(n), cy: Y(n), r: chosen ? 7 : marked.has(i) ? 6 : 4, fill: n.colour,
        "fill-opacity": !sel || lit.has(i) ? 1 : 0.15,
        stroke: chosen ? "#000" : marked.has(i) ? "#e6550d" : "none", "stroke-width": 2,
      });
      c.style.cursor = "pointer";
      const title = scEl("title", {});
      title.textContent = n.id;
      c.append(title);
      c.addEventListener("click", () => { model.set("selected", n.id); model.save_changes(); });
      svg.append(c);
      if (labels) {
        const t = scEl("text", { x: X(n), y: Y(n) - 6, "text-anchor": "middle", "font-size": 8 });
        t.textContent = n.id;
        svg.append(t);
      }
    });
    note.textContent = ` ${shownNodes.size} of ${nodes.length} nodes, ${model.get("shown_edges").length} of ${edges.length} edges shown`;
  }
  reset.addEventListener("click", resetView);
  model.on("change:data change:shown_nodes change:shown_edges change:lit change:marked change:selected", draw);
  draw();
}

export default { render };
