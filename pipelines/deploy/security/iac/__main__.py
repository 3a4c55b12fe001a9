"""`python -m pipelines.deploy.security.iac [--stack S] [--out DIR]`: the infra scan in a
process of its own, as step 2's `security.scan` runs it beside pip-audit and bandit."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.deploy.security.iac.scan import command


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.deploy.security.iac")
    parser.add_argument("--stack", default="all", help="staging, production or all")
    parser.add_argument("--out", default="", help="report directory (reports/infra-scan)")
    parser.add_argument("--root", default=".", help="the checkout to scan")
    args = parser.parse_args()
    return command(Path(args.root).resolve(), args.stack, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
