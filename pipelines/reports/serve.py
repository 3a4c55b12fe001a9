"""`invoke reports.open`: the reports directory over HTTP on 127.0.0.1 only, so the HTML
reports open in a browser on this machine (or through an SSH tunnel), nowhere else."""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

from pipelines.host.ports import free_port


def server(directory: Path, port: int | None = None) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port or free_port()), handler)


def main(directory: Path, port: int | None = None) -> int:
    if not directory.is_dir():
        print(
            f"reports.open: {directory} does not exist yet; a deploy, a drill or a game day "
            "writes it"
        )
        return 2
    try:
        httpd = server(directory, port)
    except OSError as exc:
        print(
            f"reports.open: cannot listen on 127.0.0.1:{port}: {exc.strerror}; pick another --port"
        )
        return 2
    host, bound = httpd.server_address[:2]
    newest = sorted(directory.rglob("*.html"), key=lambda p: p.stat().st_mtime)[-3:]
    print(f"serving {directory} at http://{host!s}:{bound}/  (Ctrl-C stops it)")
    for path in reversed(newest):
        print(f"  http://{host!s}:{bound}/{path.relative_to(directory)}")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0
