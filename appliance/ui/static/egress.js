// The compliance console's egress panel (issue #17): external calls per team and
// provider, a line's records on demand, each opened in the console's detail + reveal.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const fmt = App.time;

  function range() {
    const params = new URLSearchParams();
    if ($("egress-since").value) params.set("since", $("egress-since").value + "T00:00:00Z");
    if ($("egress-until").value) {  // inclusive day, as the export's
      const d = new Date($("egress-until").value + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + 1);
      params.set("until", d.toISOString());
    }
    return params;
  }

  const money = (cost) => Object.entries(cost).map(([cur, amount]) => amount + " " + cur).join(", ") || "–";
  const hits = (detectors) => Object.entries(detectors).map(([name, n]) => name + ": " + n).join(", ") || "–";

  async function load(e) {
    if (e) e.preventDefault();
    const status = $("egress-status");
    const r = await App.api("GET", "/ui/api/audit/egress?" + range() + "&limit=1");
    if (!r.ok) { status.textContent = App.friendly(r.status, r.data); status.className = "error"; return; }
    const s = r.data.summary;
    $("egress-lines").querySelector("tbody").replaceChildren(...s.lines.map((line) => {
      const tr = App.el("tr", { "data-team": line.team, "data-provider": line.provider });
      for (const v of [line.team, line.provider, line.left, line.pseudonymised, line.routed, line.blocked,
        line.budget_refused, line.prompt_tokens + " / " + line.completion_tokens, money(line.cost), hits(line.detectors)])
        tr.append(App.el("td", {}, v));
      const td = App.el("td");
      const b = App.el("button", { type: "button", class: "small", "aria-label": `Records of ${line.team} to ${line.provider}` }, "Records");
      b.addEventListener("click", () => drill(line.team, line.provider));
      td.append(b); tr.append(td);
      return tr;
    }));
    status.className = "muted";
    status.textContent = s.lines.length
      ? `${s.records} records; in all ${s.totals.left} calls left (${s.totals.pseudonymised} pseudonymised), cost ${money(s.totals.cost)}.`
      : "No external calls in this range.";
    $("egress-drill").hidden = true;
  }

  async function drill(team, provider) {
    const params = range(); params.set("team", team); params.set("provider", provider); params.set("limit", "1000");
    const r = await App.api("GET", "/ui/api/audit/egress?" + params);
    if (!r.ok) { $("egress-status").textContent = App.friendly(r.status, r.data); return; }
    const rows = r.data.records.slice().reverse();  // newest first, as the records table
    $("egress-records").querySelector("tbody").replaceChildren(...rows.map((rec) => {
      const tr = App.el("tr", { "data-record": rec.record_id });
      const egress = (rec.params && rec.params.egress) || {};
      for (const v of [rec.index, fmt(rec.recorded_at), rec.event, rec.username || "–", rec.model || "–",
        egress.verdict + (egress.budget === "exceeded" ? " (budget)" : ""), rec.outcome + (rec.status_code ? " " + rec.status_code : "")])
        tr.append(App.el("td", {}, v));
      const td = App.el("td");
      const b = App.el("button", { type: "button", class: "small", "aria-label": "Details of record " + rec.index }, "Details");
      b.addEventListener("click", () => window.AuditConsole.detail(rec));
      td.append(b); tr.append(td);
      return tr;
    }));
    $("egress-records-caption").textContent = `Records of ${team} to ${provider}` + (r.data.truncated ? " (the newest 1000)" : "");
    $("egress-drill").hidden = false;
  }

  // The same signed bundle as the console's export, holding only these calls and
  // egress_summary.json (`appliance audit export --egress`).
  async function exportCalls() {
    const status = $("egress-status");
    status.className = "muted"; status.textContent = "Exporting…";
    const body = { egress: true };
    if ($("egress-since").value) body.since = $("egress-since").value;
    if ($("egress-until").value) body.until = $("egress-until").value;
    const response = await fetch("/ui/api/audit/export", { method: "POST", credentials: "same-origin",
      headers: App.headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
    if (!response.ok) {
      let data = null; try { data = await response.json(); } catch (_) { /* */ }
      status.className = "error"; status.textContent = App.friendly(response.status, data); return;
    }
    const blob = await response.blob();
    const name = (response.headers.get("content-disposition") || "").match(/filename="?([^";]+)/);
    const a = App.el("a", { href: URL.createObjectURL(blob), download: name ? name[1] : "egress.zip", id: "egress-export-link" }, "Download the bundle again");
    a.click();
    status.replaceChildren("Egress bundle exported and recorded. ", a);
  }

  $("egress-form").addEventListener("submit", load);
  $("egress-export").addEventListener("click", exportCalls);
  load();
})();
