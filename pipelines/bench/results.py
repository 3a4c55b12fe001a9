"""Where a bench task's results go: the JSON file for machines, its summary for people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write(results: dict[str, Any], out: str, summary: str) -> Path:
    """`results` as JSON at `out` (directories made), then `summary` and the file's path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(summary)
    print(f"results: {path}")
    return path
