"""`python -m pipelines.deploy.gates.coverage_report [--fail-under N]`: the coverage the test
passes collected, as a terminal table, reports/coverage.xml and reports/coverage.json.

The files are written before the threshold is checked, so a run under it still leaves them.
Exit status 2 below the threshold, as `coverage report --fail-under` has it; 1 with no data.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.deploy.gates.commands import COVERAGE_JSON, COVERAGE_XML


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.deploy.gates.coverage_report")
    parser.add_argument("--fail-under", type=float, default=None)
    args = parser.parse_args(argv)
    import coverage

    data = coverage.Coverage()
    data.load()
    try:
        data.json_report(outfile=str(COVERAGE_JSON))
        data.xml_report(outfile=str(COVERAGE_XML))
        total = data.report()
    except coverage.exceptions.NoDataError:
        print("coverage: no data; did the test passes run with --cov?", file=sys.stderr)
        return 1
    if args.fail_under is not None and total < args.fail_under:
        print(f"coverage: {total:.2f} % is under the required {args.fail_under:g} %")
        return 2
    print(
        f"coverage: {total:.2f} %"
        + (f" (required {args.fail_under:g} %)" if args.fail_under else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
