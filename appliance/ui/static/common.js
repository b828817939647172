// Shared helpers: CSRF-protected fetch, friendly error text, DOM building without innerHTML.
"use strict";
const App = (() => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";

  function headers(extra) {
    return Object.assign({ "x-csrf-token": csrf, "Accept": "application/json" }, extra || {});
  }

  async function api(method, url, body) {
    const init = { method, headers: headers(), credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let data = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("json")) {
      try { data = await response.json(); } catch (_) { data = null; }
    }
    return { ok: response.ok, status: response.status, data, response };
  }

  function friendly(status, data) {
    const msg = data && data.error && data.error.message ? data.error.message : "";
    if (status === 401) return "Your session has expired. Please sign in again.";
    if (status === 429) return "You have reached your usage quota. Please wait a little and try again." + (msg ? " (" + msg + ")" : "");
    if (status === 503) return "This model is unavailable right now. Try again shortly or pick another model.";
    if (status === 502 || status === 504) return "The model did not answer in time. Please try again.";
    if (status === 403) return msg || "You are not allowed to do this.";
    if (status === 404) return msg || "Not found.";
    if (status === 0) return "The appliance cannot be reached. Check your connection.";
    return msg || "Something went wrong (" + status + ").";
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : v);
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function signInLink() {
    const a = el("a", { href: "/ui/login?next=" + encodeURIComponent(location.pathname) }, "Sign in again");
    return a;
  }

  // One format for every time on every page: 2026-12-05 10:04:59 UTC.
  function time(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  return { csrf, headers, api, friendly, el, signInLink, time };
})();
