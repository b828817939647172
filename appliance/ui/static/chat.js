// The chat page: conversations on the server, answers streamed from /v1/chat/completions.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const list = $("conversations"), box = $("messages"), form = $("composer"), prompt = $("prompt");
  const send = $("send"), stop = $("stop"), errorBox = $("chat-error"), title = $("chat-title");
  const modelSelect = $("model");
  // How often the audit log signs a checkpoint: when a receipt's proof can be fetched.
  const checkpointInterval = Number(box.dataset.checkpointInterval) || 10;
  let current = null;      // {id, title, messages}
  let controller = null;   // AbortController of the stream in flight

  function showError(text, withSignIn) {
    errorBox.textContent = text;
    if (withSignIn) { errorBox.append(" "); errorBox.append(App.signInLink()); }
    errorBox.hidden = false;
  }
  function clearError() { errorBox.hidden = true; errorBox.textContent = ""; }

  function messageNode(msg) {
    const node = App.el("article", { class: "msg " + msg.role, "aria-label": msg.role === "user" ? "You" : "Assistant" });
    node.append(App.el("div", { class: "who" }, msg.role === "user" ? "You" : "Assistant" + (msg.model ? " · " + msg.model : "")));
    const details = App.el("details", { class: "reasoning" });
    details.append(App.el("summary", {}, "Reasoning"));
    details.append(App.el("div", { class: "reasoning-text" }));
    details.hidden = !msg.reasoning;
    node.append(details);
    node.append(App.el("div", { class: "body" }));
    fill(node, msg);
    addReceipt(node, msg);
    return node;
  }
  // The "Receipt" control, once the answer's receipt is known (kept with the conversation).
  function addReceipt(node, msg) {
    if (msg.role !== "assistant" || !msg.receipt || !msg.request_id || node.querySelector(".receipt")) return;
    node.append(Receipts.control(msg, checkpointInterval));
  }
  function fill(node, msg) {
    const body = node.querySelector(".body");
    if (msg.role === "user") body.textContent = msg.content;
    else body.innerHTML = Markdown.render(msg.content || "");  // escaped by Markdown.render
    const details = node.querySelector(".reasoning");
    details.hidden = !msg.reasoning;
    node.querySelector(".reasoning-text").textContent = msg.reasoning || "";
  }

  function renderAll() {
    box.replaceChildren(...(current ? current.messages : []).map(messageNode));
    title.textContent = current ? current.title : "New chat";
    box.scrollTop = box.scrollHeight;
  }

  async function loadList() {
    const r = await App.api("GET", "/ui/api/conversations");
    if (!r.ok) { showError(App.friendly(r.status, r.data), r.status === 401); return []; }
    list.replaceChildren(...r.data.data.map((c) => {
      const li = App.el("li");
      const b = App.el("button", { type: "button", class: "conv" + (current && current.id === c.id ? " active" : ""),
        "data-id": c.id, "aria-current": current && current.id === c.id ? "true" : null },
        c.erased ? "(erased conversation)" : c.title);
      b.addEventListener("click", () => openConv(c.id));
      li.append(b);
      return li;
    }));
    return r.data.data;
  }

  async function openConv(id) {
    clearError();
    const r = await App.api("GET", "/ui/api/conversations/" + encodeURIComponent(id));
    if (!r.ok) { showError(App.friendly(r.status, r.data), r.status === 401); return; }
    current = r.data;
    renderAll();
    loadList();
  }

  async function save() {
    if (!current) return;
    const r = await App.api("PUT", "/ui/api/conversations/" + current.id, { messages: current.messages });
    if (!r.ok) showError("The conversation could not be saved: " + App.friendly(r.status, r.data), r.status === 401);
  }

  async function ask(text) {
    clearError();
    const model = modelSelect.value;
    if (!model) { showError("No model is available to you."); return; }
    if (!current) {
      const r = await App.api("POST", "/ui/api/conversations", { title: text.slice(0, 60) || "New chat" });
      if (!r.ok) { showError(App.friendly(r.status, r.data), r.status === 401); return; }
      current = r.data;
      renderAll();
    }
    current.messages.push({ role: "user", content: text });
    box.append(messageNode(current.messages[current.messages.length - 1]));
    const answer = { role: "assistant", content: "", reasoning: "", model };
    const node = messageNode(answer);
    node.classList.add("streaming");
    box.append(node);
    box.scrollTop = box.scrollHeight;
    controller = new AbortController();
    send.hidden = true; stop.hidden = false; stop.focus();
    let failed = false;
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST", credentials: "same-origin", signal: controller.signal,
        headers: App.headers({ "Content-Type": "application/json", "Accept": "text/event-stream" }),
        body: JSON.stringify({ model, stream: true,
          messages: current.messages.filter((m) => m !== answer).map((m) => ({ role: m.role, content: m.content })) }),
      });
      if (!response.ok) {
        let data = null;
        try { data = await response.json(); } catch (_) { /* not JSON */ }
        failed = true;
        showError(App.friendly(response.status, data), response.status === 401);
      } else {
        await readStream(response, answer, node);
      }
    } catch (err) {
      if (err.name === "AbortError") answer.stopped = true;
      else { failed = true; showError(App.friendly(0, null)); }
    } finally {
      controller = null;
      send.hidden = false; stop.hidden = true;
      node.classList.remove("streaming");
      if (answer.stopped) node.querySelector(".who").append(" (stopped)");
      addReceipt(node, answer);
    }
    if (failed && !answer.content) {
      node.remove();
      current.messages.pop();  // the unanswered question
      prompt.value = text;
      return;
    }
    delete answer.stopped;
    if (!answer.reasoning) delete answer.reasoning;
    current.messages.push(answer);
    await save();
    loadList();
  }

  async function readStream(response, answer, node) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", pending = false;
    const paint = () => { pending = false; fill(node, answer); box.scrollTop = box.scrollHeight; };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const receipt = Receipts.fromEvent(event);
        const requestId = receipt && Receipts.requestId(receipt);
        if (requestId) {
          answer.receipt = receipt; answer.request_id = requestId;
          Receipts.markReceived(answer);
          continue;
        }
        const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (!data || data === "[DONE]") continue;
        let chunk;
        try { chunk = JSON.parse(data); } catch (_) { continue; }
        if (chunk.error) {
          const code = typeof chunk.error.code === "number" ? chunk.error.code : 503;
          showError(App.friendly(code, chunk));
          continue;
        }
        for (const choice of chunk.choices || []) {
          const delta = choice.delta || {};
          if (delta.reasoning_content) answer.reasoning += delta.reasoning_content;
          else if (delta.reasoning) answer.reasoning += delta.reasoning;
          if (delta.content) answer.content += delta.content;
        }
        if (!pending) { pending = true; requestAnimationFrame(paint); }
      }
    }
    paint();
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = prompt.value.trim();
    if (!text || controller) return;
    prompt.value = "";
    ask(text);
  });
  prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  stop.addEventListener("click", () => { if (controller) controller.abort(); });
  $("new-chat").addEventListener("click", () => { current = null; clearError(); renderAll(); loadList(); prompt.focus(); });
  $("rename").addEventListener("click", async () => {
    if (!current) return;
    const name = window.prompt("New name for this conversation", current.title);
    if (!name || !name.trim()) return;
    const r = await App.api("PUT", "/ui/api/conversations/" + current.id, { title: name.trim().slice(0, 200) });
    if (!r.ok) { showError(App.friendly(r.status, r.data), r.status === 401); return; }
    current.title = r.data.title;
    renderAll(); loadList();
  });
  $("delete").addEventListener("click", async () => {
    if (!current || !window.confirm("Delete this conversation for good?")) return;
    const r = await App.api("DELETE", "/ui/api/conversations/" + current.id);
    if (!r.ok) { showError(App.friendly(r.status, r.data), r.status === 401); return; }
    current = null; renderAll(); loadList();
  });

  loadList().then((items) => { const first = items.find((c) => !c.erased); if (first) openConv(first.id); });
})();
