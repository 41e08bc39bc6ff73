// The offline HTML page's script (scZoomPan comes first): selecting a node shows its panel, colours the prompt
// tokens by its activations and highlights what feeds it and what it feeds; "show" hides the rest of the graph;
// wheel zooms, drag pans, "reset view" goes back. Node labels are drawn when the graph is small.
(function () {
  const D = JSON.parse(document.getElementById("sc-data").textContent);
  const svg = document.querySelector("#sc-graph svg");
  const circles = Array.from(svg.querySelectorAll("circle"));
  const lines = Array.from(svg.querySelectorAll("line"));
  const succ = circles.map(() => []), pred = circles.map(() => []);
  D.flow.forEach(([s, d]) => { succ[s].push(d); pred[d].push(s); });
  let current = null;
  function closure(i, adj) {
    const seen = new Set(), todo = [i];
    while (todo.length) for (const j of adj[todo.pop()]) if (!seen.has(j)) { seen.add(j); todo.push(j); }
    seen.delete(i);
    return seen;
  }
  const texts = circles.length <= D.label_limit ? circles.map((c, k) => {
    const t = document.createElementNS("http://www.w3.org/2000/svg", "text");
    t.setAttribute("x", c.getAttribute("cx"));
    t.setAttribute("y", String(+c.getAttribute("cy") - 7));
    t.setAttribute("text-anchor", "middle");
    t.setAttribute("font-size", "8");
    t.setAttribute("pointer-events", "none");
    t.textContent = D.labels[k];  // text, never markup
    svg.appendChild(t);
    return t;
  }) : [];
  const orig = Array.from(document.querySelectorAll("#sc-acts td.o span"));
  const prun = Array.from(document.querySelectorAll("#sc-acts td.p span"));
  function colour(v, m) {
    const a = m > 0 ? Math.min(1, Math.abs(v) / m) : 0;
    return (v >= 0 ? "rgba(33,102,172," : "rgba(178,24,43,") + a.toFixed(2) + ")";
  }
  function paint(spans, vals, m) {
    spans.forEach((s, k) => { s.style.background = vals ? colour(vals[k], m) : ""; s.title = vals ? String(vals[k]) : ""; });
  }
  function showScope() {
    const scope = document.getElementById("sc-scope").value;
    let keep = null;
    if (scope !== "all" && current !== null) {
      keep = new Set([current]);
      if (scope !== "downstream") closure(current, pred).forEach((j) => keep.add(j));
      if (scope !== "upstream") closure(current, succ).forEach((j) => keep.add(j));
    }
    const on = (k) => keep === null || keep.has(k);
    circles.forEach((c, k) => { c.style.display = on(k) ? "" : "none"; if (texts[k]) texts[k].style.display = on(k) ? "" : "none"; });
    lines.forEach((l) => { l.style.display = on(+l.dataset.s) && on(+l.dataset.d) ? "" : "none"; });
  }
  function select(i) {
    current = i;
    const up = closure(i, pred), down = closure(i, succ), a = new Set([i, ...up]), b = new Set([i, ...down]);
    circles.forEach((c, k) => {
      c.setAttribute("fill-opacity", a.has(k) || b.has(k) ? 1 : 0.15);
      c.setAttribute("r", k === i ? 7 : 4);
      c.setAttribute("stroke", k === i ? "#000" : "none");
      c.setAttribute("stroke-width", 2);
    });
    lines.forEach((l) => {
      const s = +l.dataset.s, d = +l.dataset.d;
      l.setAttribute("stroke-opacity", (a.has(s) && a.has(d)) || (b.has(s) && b.has(d)) ? 0.9 : 0.05);
    });
    document.querySelectorAll(".sc-np,.sc-hp").forEach((e) => { e.hidden = true; });
    const np = document.getElementById("np-" + i);
    if (np) np.hidden = false;
    const h = D.head[i];
    if (h) document.getElementById(h).hidden = false;
    const v = D.acts[i];
    let m = 0;
    if (v) v[0].concat(v[1]).forEach((x) => { m = Math.max(m, Math.abs(x)); });
    paint(orig, v && v[0], m);
    paint(prun, v && v[1], m);
    document.getElementById("sc-scale").textContent = v ? m.toPrecision(3) : "-";
    document.getElementById("sc-pick").value = String(i);
    showScope();
  }
  circles.forEach((c, k) => c.addEventListener("click", () => select(k)));
  document.getElementById("sc-pick").addEventListener("change", (e) => select(+e.target.value));
  document.getElementById("sc-scope").addEventListener("change", showScope);
  document.getElementById("sc-reset").addEventListener("click", scZoomPan(svg));
  if (D.first !== null) select(D.first);
})();
