"""Self-contained HTML pages: inline CSS/JS from ``viz/assets``, JSON data islands, escaping.

Every page we write must open offline from a single file (no CDN, no fetch), so assets are inlined.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any


def asset(name: str) -> str:
    """Text of ``astro_reasoner/viz/assets/<name>`` (shipped as package data)."""
    return resources.files("astro_reasoner.viz").joinpath("assets", name).read_text(encoding="utf-8")


def json_island(obj: Any) -> str:
    """JSON safe to put inside ``<script type="application/json">``: ``<``, ``>`` and ``&`` are escaped as
    ``\\u003c`` etc., so no string in the data (model output!) can close the script element."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def page(title: str, body: str, *, css: str = "", js: str = "") -> str:
    """A complete HTML document with inline ``css`` and ``js`` (the script runs after the body)."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n<style>\n{css}\n</style>\n</head>\n<body>\n{body}\n"
        + (f"<script>\n{js}\n</script>\n" if js else "")
        + "</body>\n</html>\n"
    )
