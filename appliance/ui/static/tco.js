// The compliance console's cost panel (appliance tco): this month's in-house X,
// external Y and what the external share would have cost in-house Z, as bars drawn
// like charts.js (inline SVG, DOM calls, no library), each figure with its basis and
// the full list of assumptions under the chart.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const NS = "http://www.w3.org/2000/svg";
  const num = (n) => Number(n).toLocaleString("en-US");
  const money = (v, cur) => v === null || v === undefined ? "n/a"
    : Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) + " " + cur;

  function svg(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }

  // bars: [{key, label, value (null: not computable), color}]; horizontal, one scale.
  function barChart(container, bars, currency, label) {
    const W = 900, ROW = 34, L = 230, R = 120, T = 6;
    const H = T * 2 + ROW * bars.length;
    const max = Math.max(0, ...bars.map((b) => b.value || 0)) || 1;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": label + ": " + bars.map((b) => b.label + " " + money(b.value, currency)).join(", ") });
    bars.forEach((b, i) => {
      const y = T + i * ROW;
      const g = svg("g", { "data-bar": b.key });
      g.append(svg("text", { x: 0, y: y + ROW / 2 + 4, "font-size": 12, fill: "#1b1b1b" }, b.label));
      const width = b.value ? Math.max(1, (b.value / max) * (W - L - R)) : 0;
      if (width) {
        const rect = svg("rect", { x: L, y: y + 6, width, height: ROW - 12, fill: Charts.PALETTE[b.color] });
        rect.append(svg("title", {}, b.label + ": " + money(b.value, currency)));
        g.append(rect);
      }
      g.append(svg("text", { x: L + width + 6, y: y + ROW / 2 + 4, "font-size": 12, fill: "#333" },
        money(b.value, currency)));
      root.append(g);
    });
    root.append(svg("line", { x1: L, y1: T, x2: L, y2: H - T, stroke: "#555" }));
    container.replaceChildren(root);
  }

  function fact(term, value, basis) {
    const dd = App.el("dd", {});
    dd.append(App.el("strong", {}, value), document.createTextNode(" · " + basis));
    return [App.el("dt", {}, term), dd];
  }

  function draw(d) {
    const cur = d.currency, ih = d.in_house, ex = d.external;
    const tokens = (u) => `${num(u.input_tokens)} input and ${num(u.output_tokens)} output tokens`;
    const noRate = "n/a: state tco.prefill_tokens_per_s, tco.decode_tokens_per_s and tco.utilisation";
    barChart($("tco-chart"), [
      { key: "in-house", label: "In-house (X)", value: ih.cost, color: 0 },
      { key: "external", label: "External (Y)", value: ex.spend, color: 1 },
      { key: "external-in-house", label: "External share in-house (Z)", value: ex.in_house_cost, color: 2 },
    ], cur, "Cost in " + d.month);
    $("tco-caption").textContent = `${d.month} (UTC, so far), in ${cur}`;
    const other = ex.other_currencies.map((o) => money(o.spend, o.currency) + ` (${o.requests} request(s), not converted)`);
    const facts = [
      fact("In-house (X)", ih.cost === null ? noRate : money(ih.cost, cur),
        `${num(ih.requests)} in-house request(s), ${tokens(ih)}, at the in-house per-million rates`),
      fact("External (Y)", money(ex.spend, cur),
        `recorded with ${num(ex.requests - ex.uncosted_requests)} external request(s)` +
        (ex.providers.length ? " to " + ex.providers.join(", ") : "") +
        (other.length ? "; also " + other.join(", ") : "") +
        (ex.uncosted_requests ? `; ${ex.uncosted_requests} without usage, so without cost` : "")),
      fact("External share in-house (Z)", ex.in_house_cost === null ? noRate : money(ex.in_house_cost, cur),
        `the external requests' ${tokens(ex)} at the in-house per-million rates`),
      fact("Cluster, whole month", money(d.monthly_cost, cur),
        "hardware depreciation, power and operations: paid whether used or not"),
    ];
    $("tco-figures").replaceChildren(...facts.flat());
    $("tco-assumptions").replaceChildren(...d.assumptions.map((a) => App.el("li", {}, a)));
    $("tco-body").hidden = false;
  }

  async function load() {
    const r = await App.api("GET", "/ui/api/audit/tco");
    const status = $("tco-status");
    if (!r.ok) { status.textContent = App.friendly(r.status, r.data); status.className = "error"; return; }
    if (!r.data.configured) {
      status.className = "muted";
      status.textContent = `No cost chart for ${r.data.month} yet: appliance.yaml does not state everything it needs (docs/tco.md).`;
      $("tco-missing").replaceChildren(...r.data.missing.map((m) => App.el("li", {}, m)));
      $("tco-setup").hidden = false;
      return;
    }
    status.textContent = "";
    draw(r.data);
  }

  load();
})();
