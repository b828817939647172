// Bar and line charts as inline SVG, built with DOM calls (no library).
"use strict";
const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f5fbf", "#b3261e", "#1e7a3c", "#8a4f00", "#6b2fa3", "#00717a", "#5d5d5d"];
  function svg(tag, attrs) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    return n;
  }
  // series: {name: [values per day]}; stacked bars per day.
  function stacked(container, days, series, label) {
    const W = 480, H = 200, L = 40, B = 24, T = 8;
    const names = Object.keys(series);
    const totals = days.map((_, i) => names.reduce((s, n) => s + series[n][i], 0));
    const max = Math.max(1, ...totals);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label + ": " +
      (names.length ? names.map((n) => n + " " + series[n].reduce((a, b) => a + b, 0)).join(", ") : "no data") });
    root.append(svg("line", { x1: L, y1: H - B, x2: W, y2: H - B, stroke: "#555" }));
    const axis = svg("text", { x: 2, y: T + 10, "font-size": 11, fill: "#333" }); axis.textContent = String(max); root.append(axis);
    const zero = svg("text", { x: 2, y: H - B, "font-size": 11, fill: "#333" }); zero.textContent = "0"; root.append(zero);
    const slot = (W - L) / Math.max(1, days.length), bw = Math.max(2, slot * 0.7);
    days.forEach((day, i) => {
      let y = H - B;
      names.forEach((n, k) => {
        const h = (series[n][i] / max) * (H - B - T);
        if (h > 0) {
          const r = svg("rect", { x: L + i * slot + (slot - bw) / 2, y: y - h, width: bw, height: h, fill: PALETTE[k % PALETTE.length] });
          const t = svg("title", {}); t.textContent = `${day} ${n}: ${series[n][i]}`; r.append(t);
          root.append(r); y -= h;
        }
      });
      if (i % Math.ceil(days.length / 7) === 0) {
        const t = svg("text", { x: L + i * slot, y: H - 6, "font-size": 10, fill: "#333" }); t.textContent = day.slice(5); root.append(t);
      }
    });
    const legend = document.createElement("ul");
    legend.className = "legend";
    names.forEach((n, k) => {
      const li = document.createElement("li");
      const sw = document.createElement("span"); sw.className = "swatch"; sw.dataset.color = String(k % PALETTE.length);
      li.append(sw, document.createTextNode(n));
      legend.append(li);
    });
    container.replaceChildren(root, legend);
  }
  return { stacked, PALETTE };
})();
