"""A self-contained API docs page: no CDN, and its inline code carries the CSP nonce."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>drydock API</title>
<style nonce="{nonce}">body{{font:15px system-ui,sans-serif;margin:2rem;max-width:60rem}}
code{{background:#f3f3f3;padding:0 .3em}}li{{margin:.3em 0}}</style></head>
<body><h1>drydock API</h1><p>Machine-readable spec: <a href="/openapi.json">/openapi.json</a></p>
<ul id="ops"></ul>
<script nonce="{nonce}">
fetch('/openapi.json').then(r => r.json()).then(spec => {{
  const ul = document.getElementById('ops');
  for (const [path, ops] of Object.entries(spec.paths)) {{
    for (const [method, op] of Object.entries(ops)) {{
      const li = document.createElement('li');
      li.textContent = method.toUpperCase() + ' ' + path + ' - ' + (op.summary || '');
      ul.appendChild(li);
    }}
  }}
}});
</script></body></html>"""


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    nonce = request.scope.get("state", {}).get("csp_nonce", "")
    return HTMLResponse(_PAGE.format(nonce=nonce))
