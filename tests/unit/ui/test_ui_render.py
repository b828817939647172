"""Pages escape what they render and forbid inline and foreign scripts."""

from __future__ import annotations

from appliance.ui import STATIC_DIR, render_page


def test_templates_autoescape_and_strict_csp() -> None:
    response = render_page("forbidden.html", title="<b>x</b>", role="<script>alert(1)</script>")
    body = bytes(response.body).decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;" in body
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_assets_are_vendored() -> None:
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
