"""``report.html``: the Markdown report as one self-contained page, its figures embedded.

The Markdown is converted by the ``markdown`` package (tables included); every ``<img>`` whose
source is a file beside the report is replaced by a ``data:`` URI of that file, so the page can be
mailed or opened anywhere and never shows a broken image. A figure that is missing is named in the
page instead of a broken link.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; line-height: 1.45; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.5em 0; }
code { background: #f5f5f5; padding: 0 0.2em; }
.missing { color: #b00; font-weight: bold; }
"""
_IMG = re.compile(r"<img\b[^>]*>")
_SRC = re.compile(r'\ssrc="([^"]*)"')
MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def embed_images(body: str, base: Path) -> str:
    """Every ``<img>`` of a local file as a ``data:`` URI (a missing file becomes a visible note)."""

    def one(m: re.Match) -> str:
        tag = m.group(0)
        found = _SRC.search(tag)
        if found is None:
            return tag
        src = html.unescape(found.group(1))
        if src.startswith(("data:", "http://", "https://")):
            return tag
        path = (base / src).resolve()
        mime = MIME.get(path.suffix.lower())
        if mime is None or not path.is_file():
            return f'<span class="missing">[figure not found: {html.escape(src)}]</span>'
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return tag[: found.start()] + f' src="data:{mime};base64,{data}"' + tag[found.end():]

    return _IMG.sub(one, body)


def write_html(results: Path) -> Path:
    """``results/report.html`` from ``results/report.md`` and the figures it links."""
    import markdown

    results = Path(results)
    text = (results / "report.md").read_text(encoding="utf-8")
    body = markdown.markdown(text, extensions=["tables", "fenced_code"], output_format="html")
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), "report")
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{embed_images(body, results)}\n</body>\n</html>\n")
    path = results / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
