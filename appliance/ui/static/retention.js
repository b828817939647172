// The compliance console's retention panel: per event kind, the period, how much
// sealed content is past it now, and how many records fall due on which UTC day.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const days = (n) => n + (n === 1 ? " day" : " days");

  function dueCell(kind, horizon) {
    const parts = kind.upcoming.map((u) => u.date + ": " + u.count);
    if (kind.later) parts.push("beyond " + days(horizon) + ": " + kind.later);
    return parts.length ? parts.join(", ") : "–";
  }

  async function load() {
    const r = await App.api("GET", "/ui/api/audit/retention");
    const status = $("retention-status");
    if (!r.ok) { status.textContent = App.friendly(r.status, r.data); status.className = "error"; return; }
    const plan = r.data;
    $("retention-default").textContent = days(plan.default_days);
    $("retention-floor").textContent = days(plan.floor_days);
    const below = Object.entries(plan.below_floor).map(([kind, n]) => kind + " " + days(n));
    $("retention-override").textContent = plan.override_reason
      ? "“" + plan.override_reason + "” (below the floor: " + below.join(", ") + ")"
      : "none";
    $("retention-kinds").querySelector("tbody").replaceChildren(...plan.kinds.map((kind) => {
      const tr = App.el("tr", { "data-event": kind.event });
      const period = days(kind.days) + (kind.rule === kind.event ? "" : " (" + kind.rule + ")");
      for (const v of [kind.event, period, kind.held, kind.due_now, dueCell(kind, plan.horizon_days)])
        tr.append(App.el("td", {}, v));
      return tr;
    }));
    const due = plan.kinds.reduce((n, k) => n + k.due_now, 0);
    status.className = "muted";
    status.textContent = plan.kinds.length
      ? `${due} record(s) past their period now; the next retention run drops their content. As of ${App.time(plan.generated_at)}.`
      : "No sealed content in the log.";
  }

  load();
})();
