// Receipts in the chat: the "Receipt" control under an answer downloads
// receipt-<request id>.json (the signed receipt, its proof against a signed checkpoint,
// and how to check both offline). See docs/ui.md "Receipts" and docs/audit.md.
"use strict";
const Receipts = (() => {
  const COMMENT = /^: ?receipt ([A-Za-z0-9_-]+)\s*$/;

  // The gateway sends a stream's receipt as an SSE comment just before the final event.
  function fromEvent(event) {
    for (const line of event.split("\n")) {
      const found = COMMENT.exec(line);
      if (found) return found[1];
    }
    return null;
  }

  // The receipt is a signed note, base64url without padding, one item a line
  // ("request-id <id>", "completion <leaf index> <hash>", ...): the value of one item.
  function item(receipt, name) {
    try {
      const b64 = receipt.replace(/-/g, "+").replace(/_/g, "/");
      const bytes = Uint8Array.from(atob(b64 + "=".repeat((4 - b64.length % 4) % 4)), (c) => c.charCodeAt(0));
      const line = new TextDecoder().decode(bytes).split("\n").find((l) => l.startsWith(name + " "));
      return line ? line.slice(name.length + 1) : null;
    } catch (_) {
      return null;  // not base64url: no link rather than a broken one
    }
  }
  function requestId(receipt) { return item(receipt, "request-id"); }
  // Request ids are the caller's to choose, so one id may name several answers: the
  // proof asked for is that of the completion leaf this receipt names.
  function completionIndex(receipt) { return (item(receipt, "completion") || "").split(" ")[0]; }

  // The commands that check the file offline (appliance receipt verify; docs/audit.md).
  function verifySteps(id, withProof) {
    const file = "receipt-" + id + ".json";
    const steps = ["jq -r .receipt " + file + " > receipt-" + id + ".txt"];
    if (withProof) steps.push("jq .proof " + file + " > proof-" + id + ".json");
    steps.push("jq -j .answer " + file + " > answer-" + id + ".txt");
    steps.push("appliance receipt verify receipt-" + id + ".txt --key log-key.txt" +
      (withProof ? " --proof proof-" + id + ".json" : "") + " --answer answer-" + id + ".txt");
    return {
      command: "appliance receipt verify",
      steps,
      note: "log-key.txt: the log's public key, obtained independently of this file " +
        "(`appliance audit public-key` on the appliance, or from your compliance officer). " +
        (withProof ? "" : "No proof yet: this checks the receipt's signature and the answer; " +
          "use Receipt in the chat again later for the proof that the log holds them."),
    };
  }

  // When each answer arrived in this page (not saved): how long its checkpoint may take.
  const receivedAt = new WeakMap();
  function markReceived(msg) { receivedAt.set(msg, Date.now()); }

  function download(msg, proof) {
    const id = msg.request_id;
    const doc = { request_id: id, receipt: msg.receipt, proof: proof, answer: msg.content || "",
      verify: verifySteps(id, proof !== null) };
    const blob = new Blob([JSON.stringify(doc, null, 2) + "\n"], { type: "application/json" });
    const href = URL.createObjectURL(blob);
    App.el("a", { href, download: "receipt-" + id.replace(/[^A-Za-z0-9._-]/g, "_") + ".json" }).click();
    setTimeout(() => URL.revokeObjectURL(href), 60_000);  // after the download has read it
  }

  // Seconds until a checkpoint likely covers the answer: the log signs one within about
  // its interval of the last record (answers reloaded from history: a whole interval).
  function waitSeconds(msg, intervalS) {
    const at = receivedAt.get(msg);
    const left = at ? intervalS - (Date.now() - at) / 1000 : intervalS;
    return Math.max(1, Math.ceil(left)) + 1;
  }

  // The control under one answer: msg carries request_id and receipt (base64url).
  function control(msg, intervalS) {
    const box = App.el("div", { class: "receipt" });
    const get = App.el("button", { type: "button", class: "receipt-link",
      "aria-label": "Download the receipt and proof of this answer" }, "Receipt");
    const alone = App.el("button", { type: "button", class: "receipt-link receipt-alone", hidden: true },
      "Download receipt only");
    const status = App.el("span", { class: "receipt-status", role: "status" });
    box.append(get, " ", status, " ", alone);
    let timer = null;

    function stopWaiting() { if (timer !== null) { clearTimeout(timer); timer = null; } }
    function pending(r) {
      return r.status === 400 && r.data && r.data.error && r.data.error.code === "receipt_not_yet_covered";
    }
    async function proof() {
      const index = completionIndex(msg.receipt);
      return App.api("GET", "/audit/receipts/" + encodeURIComponent(msg.request_id) + "/proof" +
        (/^\d+$/.test(index) ? "?index=" + index : ""));
    }

    async function fetchAndSave(retrying) {
      stopWaiting();
      get.disabled = true;
      status.textContent = "Fetching the proof…";
      let r;
      try { r = await proof(); } catch (_) { r = { ok: false, status: 0, data: null }; }
      get.disabled = false;
      if (r.ok) {
        download(msg, r.data);
        alone.hidden = true;
        status.textContent = "Downloaded with its proof.";
      } else if (pending(r) && !retrying) {
        // One automatic retry once the log has likely signed a checkpoint over the answer.
        const wait = waitSeconds(msg, intervalS);
        status.textContent = "Proof available in about " + wait + " s; the download starts then.";
        alone.hidden = false;
        timer = setTimeout(() => fetchAndSave(true), wait * 1000);
      } else if (pending(r)) {
        download(msg, null);
        alone.hidden = true;
        status.textContent = "No signed checkpoint covers this answer yet: downloaded the receipt alone. " +
          "Use Receipt again later for the proof.";
      } else {
        alone.hidden = false;
        status.textContent = "The proof could not be fetched: " + App.friendly(r.status, r.data);
      }
    }

    get.addEventListener("click", () => fetchAndSave(false));
    alone.addEventListener("click", () => {
      stopWaiting();
      download(msg, null);
      alone.hidden = true;
      status.textContent = "Downloaded the receipt without its proof. Use Receipt again later for the proof.";
    });
    return box;
  }

  return { fromEvent, requestId, markReceived, control };
})();
