// The admin page: engine replicas and their health, API keys (create, revoke).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const fmt = App.time;
  // The key this admin is signed in with: revoking it would lock them out.
  const ownKey = $("keys").dataset.ownKey || "";
  let shownKey = null;  // the new key whose secret is on screen

  async function engines() {
    const r = await App.api("GET", "/ui/api/admin/engines");
    const body = $("engines").querySelector("tbody");
    if (!r.ok) { body.replaceChildren(App.el("tr", {}, App.friendly(r.status, r.data))); return; }
    // One row per replica: a model served by two engines shows two rows.
    body.replaceChildren(...r.data.data.map((e) => {
      const tr = App.el("tr");
      tr.append(App.el("td", {}, e.model), App.el("td", {}, e.url),
        App.el("td", { class: e.healthy ? "ok" : "error" }, e.healthy ? "● healthy" : "● unreachable"),
        App.el("td", {}, e.outstanding), App.el("td", {}, e.consecutive_failures),
        App.el("td", { class: e.circuit_open ? "error" : null }, e.circuit_open ? "open" : "closed"));
      return tr;
    }));
  }

  async function keys() {
    const r = await App.api("GET", "/admin/api-keys");
    const body = $("keys").querySelector("tbody");
    if (!r.ok) return;
    body.replaceChildren(...r.data.data.map((k) => {
      const tr = App.el("tr", { "data-key": k.key_id });
      const state = k.revoked_at ? "revoked" : (k.expires_at && new Date(k.expires_at) < new Date() ? "expired" : "active");
      tr.append(App.el("td", {}, k.key_id.slice(0, 8)), App.el("td", {}, k.name), App.el("td", {}, k.owner),
        App.el("td", {}, k.roles.join(", ")), App.el("td", {}, fmt(k.created_at)), App.el("td", {}, state));
      const td = App.el("td");
      if (k.key_id === ownKey) {
        td.append(App.el("span", { class: "muted" }, "your key"));
      } else if (state === "active") {
        const b = App.el("button", { type: "button", class: "small danger", "aria-label": "Revoke key " + k.name }, "Revoke");
        b.addEventListener("click", async () => {
          if (!window.confirm("Revoke the key " + k.name + "? Clients using it stop working at once.")) return;
          const d = await App.api("DELETE", "/admin/api-keys/" + encodeURIComponent(k.key_id));
          if (d.ok && k.key_id === shownKey) { $("new-key").hidden = true; $("new-key-secret").textContent = ""; shownKey = null; }
          if (d.ok) keys();
        });
        td.append(b);
      }
      tr.append(td);
      return tr;
    }));
  }

  $("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: $("key-name").value.trim(), owner: $("key-owner").value.trim(), roles: [$("key-role").value] };
    if ($("key-days").value) body.expires_in_days = Number($("key-days").value);
    const r = await App.api("POST", "/admin/api-keys", body);
    const box = $("new-key"), error = $("key-error");
    if (!r.ok) { box.hidden = true; error.hidden = false; error.textContent = App.friendly(r.status, r.data); return; }
    error.hidden = true;
    $("new-key-secret").textContent = r.data.api_key;
    shownKey = r.data.key_id;
    box.hidden = false;
    keys();
  });
  $("refresh-engines").addEventListener("click", engines);
  engines(); keys();
})();
