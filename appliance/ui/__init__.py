"""The browser UI: server-rendered Jinja2 templates and vendored static assets (no
CDN, no external fonts, no build step), so the pages work air-gapped."""

from __future__ import annotations

from appliance.ui.render import PAGE_HEADERS, STATIC_DIR, TEMPLATE_DIR, render_page

__all__ = ["PAGE_HEADERS", "STATIC_DIR", "TEMPLATE_DIR", "render_page"]
