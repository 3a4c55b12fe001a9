"""One self-contained HTML page: a heading, a few facts, and plotly figures. plotly.js is
inlined once, with the first figure; the others reuse it."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px;
       color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: .9rem; }
td, th { border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #cf222e; font-weight: 600; }
"""


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; every cell is escaped. A cell of ("ok"|"bad", text) is coloured."""

    def cell(value: Any) -> str:
        if isinstance(value, tuple) and len(value) == 2 and value[0] in ("ok", "bad"):
            return f'<td class="{value[0]}">{escape(str(value[1]))}</td>'
        return f"<td>{escape(str(value))}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(title: str, facts: Sequence[str], sections: Sequence[tuple[str, Any | str]]) -> str:
    """`sections` are (heading, plotly figure or an HTML fragment already escaped)."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        "<ul>" + "".join(f"<li>{escape(f)}</li>" for f in facts) + "</ul>",
    ]
    inlined = False
    for index, (heading, content) in enumerate(sections):
        parts.append(f"<h2>{escape(heading)}</h2>")
        if isinstance(content, str):
            parts.append(content)
            continue
        parts.append(
            content.to_html(
                full_html=False,
                include_plotlyjs=not inlined,
                div_id=f"chart-{index}",
                config={"displaylogo": False, "responsive": True},
            )
        )
        inlined = True
    parts.append("</body></html>")
    return "\n".join(parts)


def write(path: Path, html: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html)
    return path
