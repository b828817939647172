// The compliance console: records, detail + reveal, integrity, export, usage, erasure.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const PAGE = 20;
  let rows = [], page = 0, selected = null;

  const fmt = App.time;

  async function search(e) {
    if (e) e.preventDefault();
    const params = new URLSearchParams({ limit: "1000" });
    for (const name of ["username", "subject", "team", "model", "event", "outcome"]) {
      const v = $("f-" + name).value.trim(); if (v) params.set(name, v);
    }
    if ($("f-since").value) params.set("since", $("f-since").value + "T00:00:00Z");
    if ($("f-until").value) {
      const d = new Date($("f-until").value + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + 1);
      params.set("until", d.toISOString());
    }
    if ($("f-denials").checked) params.set("denials", "true");
    const r = await App.api("GET", "/audit/records?" + params);
    if (!r.ok) { $("page-info").textContent = App.friendly(r.status, r.data); return; }
    rows = r.data.records.reverse();
    page = 0; draw();
  }

  function draw() {
    const body = $("records").querySelector("tbody");
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    page = Math.min(page, pages - 1);
    body.replaceChildren(...rows.slice(page * PAGE, page * PAGE + PAGE).map((rec) => {
      const tr = App.el("tr", { "data-record": rec.record_id });
      for (const v of [rec.index, fmt(rec.recorded_at), rec.event, rec.username || "–", rec.team || "–", rec.model || "–", rec.outcome + (rec.status_code ? " " + rec.status_code : "")])
        tr.append(App.el("td", {}, v));
      const td = App.el("td");
      const b = App.el("button", { type: "button", class: "small", "aria-label": "Details of record " + rec.index }, "Details");
      b.addEventListener("click", () => detail(rec));
      td.append(b); tr.append(td);
      return tr;
    }));
    $("page-info").textContent = rows.length ? `Page ${page + 1} of ${pages} · ${rows.length} records` : "No records match.";
    $("prev").disabled = page === 0; $("next").disabled = page >= pages - 1;
  }

  function detail(rec) {
    selected = rec;
    $("detail").hidden = false;
    $("detail-meta").textContent = JSON.stringify(rec, null, 2);
    $("reveal-content").hidden = true; $("reveal-recorded").hidden = true;
    $("reveal-form").hidden = !rec.content;
    $("reveal-reason").value = "";
    $("detail").focus();
  }

  async function reveal(e) {
    e.preventDefault();
    const reason = $("reveal-reason").value.trim();
    if (reason.length < 3) { $("reveal-reason").focus(); return; }
    const r = await App.api("POST", "/audit/records/" + selected.record_id + "/reveal", { reason });
    const out = $("reveal-content");
    if (!r.ok) { out.textContent = App.friendly(r.status, r.data); out.hidden = false; return; }
    out.textContent = r.data.content_status === "present" ? JSON.stringify(r.data.content, null, 2)
      : "Content " + r.data.content_status + " (no readable content).";
    out.hidden = false;
    // Show the audit.read record this reveal wrote.
    const found = await App.api("GET", "/audit/records?event=audit.read&limit=1000");
    const note = $("reveal-recorded");
    const mine = found.ok ? found.data.records.filter((x) => x.params && x.params.record_id === selected.record_id).pop() : null;
    note.textContent = mine
      ? `Your reveal was recorded in the audit log: record #${mine.index} (audit.read) by ${mine.username} at ${fmt(mine.recorded_at)}, reason “${mine.params.reason}”.`
      : "Your reveal was recorded in the audit log.";
    note.hidden = false;
    search();
  }

  async function integrity() {
    const r = await App.api("GET", "/ui/api/audit/integrity");
    if (!r.ok) return;
    const cp = r.data.checkpoint;
    $("cp-size").textContent = cp ? cp.tree_size + " records" : "none signed yet";
    $("cp-time").textContent = cp ? fmt(cp.created_at) : "–";
    if (r.data.last_verification) showVerification(r.data.last_verification);
    if (r.data.forwarder) showForwarder(r.data.forwarder);
  }
  // The SIEM forwarder (`appliance audit forward`) is its own process: a stalled one
  // is a logging failure the officer must see (off / behind N since T / up to date).
  function showForwarder(f) {
    const el = $("forward-state");
    const since = f.delivered_at ? "last delivery " + fmt(f.delivered_at) : "nothing delivered yet";
    if (f.state === "off") {
      el.textContent = "off (audit.forward is not set)"; el.className = "muted";
    } else if (f.state === "error") {
      el.textContent = "✘ " + f.problem; el.className = "error";
    } else if (f.state === "behind") {
      el.textContent = `behind by ${f.behind} record${f.behind === 1 ? "" : "s"}; ${since}`;
      el.className = "error";
    } else {
      el.textContent = "✔ up to date; " + since; el.className = "ok";
    }
  }
  function showVerification(v) {
    $("verify-result").textContent = (v.ok ? "✔ Verified: " : "✘ FAILED: ") + v.message;
    $("verify-result").className = v.ok ? "ok" : "error";
    $("verify-time").textContent = fmt(v.ran_at) + " (" + v.seconds + " s)";
  }
  async function verify() {
    $("verify-now").disabled = true; $("verify-result").textContent = "verifying…";
    const r = await App.api("POST", "/ui/api/audit/verify");
    $("verify-now").disabled = false;
    if (r.ok) showVerification(r.data); else $("verify-result").textContent = App.friendly(r.status, r.data);
    integrity();
  }

  async function exportBundle(e) {
    e.preventDefault();
    const status = $("export-status");
    status.textContent = "Exporting…";
    const body = {};
    if ($("export-since").value) body.since = $("export-since").value;
    if ($("export-until").value) body.until = $("export-until").value;
    const response = await fetch("/ui/api/audit/export", { method: "POST", credentials: "same-origin",
      headers: App.headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
    if (!response.ok) {
      let data = null; try { data = await response.json(); } catch (_) { /* */ }
      status.textContent = App.friendly(response.status, data); return;
    }
    const blob = await response.blob();
    const name = (response.headers.get("content-disposition") || "").match(/filename="?([^";]+)/);
    const a = App.el("a", { href: URL.createObjectURL(blob), download: name ? name[1] : "evidence.zip", id: "export-link" }, "Download the bundle again");
    a.click();
    status.replaceChildren("Bundle exported and recorded. ", a);
    integrity(); search();
  }

  async function usage() {
    const r = await App.api("GET", "/ui/api/audit/usage?days=14");
    if (!r.ok) return;
    const u = r.data;
    Charts.stacked($("chart-req-team"), u.days, u.requests_by_team, "Requests per day by team");
    Charts.stacked($("chart-tok-team"), u.days, u.tokens_by_team, "Tokens per day by team");
    Charts.stacked($("chart-req-model"), u.days, u.requests_by_model, "Requests per day by model");
    Charts.stacked($("chart-tok-model"), u.days, u.tokens_by_model, "Tokens per day by model");
    Charts.stacked($("chart-req-adapter"), u.days, u.requests_by_adapter, "Requests per day by adapter");
    Charts.stacked($("chart-tok-adapter"), u.days, u.tokens_by_adapter, "Tokens per day by adapter");
    Charts.stacked($("chart-denials"), u.days, { denials: u.denials }, "Denials per day");
  }

  async function shred(e) {
    e.preventDefault();
    const subject = $("shred-subject").value.trim(), confirm = $("shred-confirm").value.trim();
    const status = $("shred-status");
    if (subject !== confirm) { status.textContent = "The confirmation does not match the subject."; status.className = "error"; return; }
    const r = await App.api("POST", "/ui/api/audit/shred", { subject, confirm, reason: $("shred-reason").value.trim() });
    status.className = r.ok ? "ok" : "error";
    status.textContent = r.ok ? `Erased ${r.data.subject}: ${r.data.keys_destroyed} key(s) destroyed.` : App.friendly(r.status, r.data);
    if (r.ok) search();
  }

  $("search").addEventListener("submit", search);
  $("prev").addEventListener("click", () => { page--; draw(); });
  $("next").addEventListener("click", () => { page++; draw(); });
  $("reveal-form").addEventListener("submit", reveal);
  $("verify-now").addEventListener("click", verify);
  $("export-form").addEventListener("submit", exportBundle);
  $("shred-form").addEventListener("submit", shred);
  // The egress panel (egress.js) opens its records in the same detail + reveal.
  window.AuditConsole = { detail };
  integrity(); usage(); search();
})();
