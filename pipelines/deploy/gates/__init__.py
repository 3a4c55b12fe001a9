"""Deploy step 1 and the gates behind `invoke test` and `invoke check`.

commands.py  the gate commands: ruff, ruff format, mypy, two pytest passes, coverage
run.py       runs them concurrently, with logs and progress
summary.py   the summary that ends a run: states, tests counted, coverage, internal errors
progress.py  the pytest plugin that counts tests done for the progress line
inputs.py    the content key: what the gates read, hashed
record.py    the record `invoke check` writes, and what counts as a pass
step.py      step 1 itself
"""

from pipelines.deploy.gates.commands import Gate, quality_gates
from pipelines.deploy.gates.record import (
    DirtyTreeError,
    Verdict,
    check,
    check_command,
    record_path,
    run_suite,
    verify_record,
)
from pipelines.deploy.gates.run import GateResult, run_gates
from pipelines.deploy.gates.step import CI_RESULT_ENV, CiGreenStep, github_ci_result

__all__ = [
    "CI_RESULT_ENV",
    "CiGreenStep",
    "DirtyTreeError",
    "Gate",
    "GateResult",
    "Verdict",
    "check",
    "check_command",
    "github_ci_result",
    "quality_gates",
    "record_path",
    "run_gates",
    "run_suite",
    "verify_record",
]
