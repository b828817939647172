// A small Markdown renderer. Every piece of model text is HTML-escaped before any
// markup is added, so model output can never inject elements or scripts.
"use strict";
const Markdown = (() => {
  function escapeHtml(text) {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  function inline(escaped) {
    // Operates on already-escaped text.
    return escaped
      .replace(/`([^`]+)`/g, "<code>$1</code>")
      .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
  }

  function render(source) {
    const out = [];
    const parts = source.split(/```/);
    parts.forEach((part, i) => {
      if (i % 2 === 1) {
        const nl = part.indexOf("\n");
        const lang = nl >= 0 ? part.slice(0, nl).trim() : "";
        const code = nl >= 0 ? part.slice(nl + 1) : part;
        const label = lang ? ' data-lang="' + escapeHtml(lang.slice(0, 20)) + '"' : "";
        out.push("<pre class=\"code\"" + label + "><code>" + escapeHtml(code.replace(/\n$/, "")) + "</code></pre>");
        return;
      }
      let list = null;
      let para = [];
      const flush = () => {
        if (para.length) { out.push("<p>" + para.join("<br>") + "</p>"); para = []; }
        if (list) { out.push("</" + list + ">"); list = null; }
      };
      for (const raw of part.split("\n")) {
        const line = escapeHtml(raw);
        let m;
        if (!raw.trim()) { flush(); continue; }
        if ((m = raw.match(/^(#{1,4})\s+(.*)$/))) {
          flush();
          const level = m[1].length + 2;
          out.push("<h" + level + ">" + inline(escapeHtml(m[2])) + "</h" + level + ">");
          continue;
        }
        if ((m = raw.match(/^\s*([-*]|\d+\.)\s+(.*)$/))) {
          if (para.length) { out.push("<p>" + para.join("<br>") + "</p>"); para = []; }
          const kind = /\d/.test(m[1]) ? "ol" : "ul";
          if (list !== kind) { if (list) out.push("</" + list + ">"); out.push("<" + kind + ">"); list = kind; }
          out.push("<li>" + inline(escapeHtml(m[2])) + "</li>");
          continue;
        }
        if (list) { out.push("</" + list + ">"); list = null; }
        para.push(inline(line));
      }
      flush();
    });
    return out.join("");
  }

  return { render, escapeHtml };
})();
