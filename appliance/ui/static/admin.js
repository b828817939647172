// The admin page: engine replicas and their health, LoRA adapters (load, unload),
// API keys (create, revoke).
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

  // Adapters: the engines are asked each time; Load/Unload are audited admin acts.
  async function adapters() {
    const r = await App.api("GET", "/admin/adapters");
    const body = $("adapters").querySelector("tbody");
    if (!r.ok) { body.replaceChildren(App.el("tr", {}, App.friendly(r.status, r.data))); return; }
    $("adapters-empty").hidden = r.data.data.length > 0;
    body.replaceChildren(...r.data.data.map((a) => {
      const tr = App.el("tr", { "data-adapter": a.model });
      const state = !a.verified ? "fails verification" : a.loaded === null ? "engine not answering"
        : a.loaded ? "loaded" : (a.loaded_on > 0 ? "loaded on " + a.loaded_on + " of " + a.replicas : "not loaded");
      const sha = App.el("code", { title: a.manifest_sha256 }, a.manifest_sha256.slice(0, 12));
      tr.append(App.el("td", {}, a.name), App.el("td", {}, a.base), App.el("td", {}, a.rank),
        App.el("td", {}, a.teams.join(", ")), App.el("td"),
        App.el("td", { class: !a.verified ? "error" : a.loaded ? "ok" : (a.loaded === false ? "muted" : "error") }, state));
      tr.children[4].append(sha);
      const td = App.el("td");
      const act = a.loaded ? "unload" : "load";
      const b = App.el("button", { type: "button", class: a.loaded ? "small danger" : "small",
        "aria-label": (a.loaded ? "Unload adapter " : "Load adapter ") + a.model }, a.loaded ? "Unload" : "Load");
      b.addEventListener("click", async () => {
        if (act === "unload" && !window.confirm("Unload " + a.model + "? Requests for it are refused until it is loaded again.")) return;
        b.disabled = true;
        const d = await App.api("POST", "/admin/adapters/" + encodeURIComponent(a.model) + "/" + act);
        const error = $("adapter-error");
        error.hidden = d.ok;
        if (!d.ok) error.textContent = (d.data && d.data.error && d.data.error.message) || App.friendly(d.status, d.data);
        adapters();
      });
      td.append(b);
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
  $("refresh-adapters").addEventListener("click", adapters);
  engines(); adapters(); keys();
})();
