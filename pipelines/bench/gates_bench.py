"""`invoke bench.gates`: how long the quality gates take, and how long the main job takes.

- **gates**: the gates one after the other with the tests in one process (as step 1 ran
  them before), then concurrently with the tests on every core, same checkout, same run
  (`--no-e2e`: without the end-to-end tests, as a local deploy's step 1 runs them), each
  with the CPU the whole machine used meanwhile (cpu_usage.py): how many cores the serial
  run already kept busy, and how far the parallel one was from keeping all of them busy;
- **main job** (`--baseline REF`): `python3 dev.py deploy` on a fresh clone of REF and of
  HEAD, each with a virtualenv installed beforehand (install excluded), on scratch ports;
  then a docs-only commit on the HEAD clone and the time its deploy takes to reach step 5
  (a local deploy's step 1 runs the gates without the end-to-end tests: record.py);
- **runs** (`--runs N`): the README test command N times in a row, with every failed test.

Results go to reports/bench-gates.json; docs/BENCHMARKS.md records them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipelines.bench.cpu_usage import CpuUsage
from pipelines.deploy.gates.commands import Gate, quality_gates
from pipelines.deploy.gates.run import run_gates
from pipelines.deploy.gates.summary import tests_counted

ROOT = Path(__file__).resolve().parents[2]
STEP_5 = "[5/7]"
DOCS_ONLY = "docs/BENCHMARKS.md"  # what the docs-only commit changes


def serial_gates(coverage: int, e2e: bool = True) -> list[Gate]:
    """Every gate after the one before it, the tests in one process (`-n 0`)."""
    chained: list[Gate] = []
    for gate in quality_gates(coverage, workers_n="0", e2e=e2e):
        chained.append(replace(gate, after=chained[-1].name if chained else None))
    return chained


def time_gates(label: str, gates: Sequence[Gate]) -> dict[str, Any]:
    print(f"bench.gates: {label} ...", flush=True)
    started = time.monotonic()
    with CpuUsage() as usage:
        results = run_gates(gates, ROOT, progress_every_s=30)
    took = round(time.monotonic() - started, 1)
    counted = tests_counted(ROOT, gates) or {}
    print(f"bench.gates: {label} took {took} s", flush=True)
    return {
        "wall_s": took,
        "passed": all(r.ok for r in results),
        "gates": {r.name: r.duration_s for r in results},
        "tests_passed": counted.get("passed"),
        "tests_failed": counted.get("failed"),
        "cpu": usage.summary(),
        "cores_busy_timeline": usage.timeline(),
    }


def _run_timed(argv: Sequence[str], cwd: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run `argv`, its output to `log`, noting when a line with STEP_5 first appears."""
    started = time.monotonic()
    reached_5: float | None = None
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            if reached_5 is None and STEP_5 in line:
                reached_5 = time.monotonic() - started
        status = process.wait()
    return {
        "exit_code": status,
        "wall_s": round(time.monotonic() - started, 1),
        "to_step_5_s": None if reached_5 is None else round(reached_5, 1),
        "log": str(log),
    }


def _clone(ref: str, into: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "--quiet", ref], check=True)
    return into


def main_job(label: str, ref: str, workdir: Path, docs_commit: bool) -> dict[str, Any]:
    """A fresh clone of `ref`, its own virtualenv installed first (not timed), then
    `python3 dev.py deploy` timed; with `docs_commit`, a README change and its deploy too."""
    from pipelines.targets.local.scratch import scratch_environments

    clone = _clone(ref, workdir / f"clone-{label}")
    sha = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    result: dict[str, Any] = {"ref": ref, "sha": sha}
    with scratch_environments(f"drydock-bench-{label}-"):
        env = {**os.environ, "DRYDOCK_VENV": str(workdir / f"venv-{label}")}
        env.pop("VIRTUAL_ENV", None)
        print(f"bench.gates: {label}: installing {sha[:12]} into a fresh virtualenv", flush=True)
        install_started = time.monotonic()
        subprocess.run(
            [sys.executable, "dev.py", "--list"],
            cwd=clone,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        result["install_s"] = round(time.monotonic() - install_started, 1)
        print(f"bench.gates: {label}: python3 dev.py deploy", flush=True)
        result["deploy"] = _run_timed(
            [sys.executable, "dev.py", "deploy"], clone, env, workdir / f"{label}-deploy.log"
        )
        print(f"bench.gates: {label}: {result['deploy']}", flush=True)
        if docs_commit and result["deploy"]["exit_code"] == 0:
            # Not the README: a test reads it (pipelines/deploy/gates/inputs.py).
            doc = clone / DOCS_ONLY
            doc.write_text(doc.read_text() + "\nA line about nothing the gates read.\n")
            identity = ["-c", "user.email=bench@example.com", "-c", "user.name=bench"]
            subprocess.run(["git", "-C", str(clone), "add", DOCS_ONLY], check=True)
            subprocess.run(
                ["git", "-C", str(clone), *identity, "commit", "-q", "-m", "docs: a line"],
                check=True,
            )
            print(f"bench.gates: {label}: the deploy of a docs-only commit", flush=True)
            result["docs_only"] = _run_timed(
                [sys.executable, "dev.py", "deploy"], clone, env, workdir / f"{label}-docs.log"
            )
            print(f"bench.gates: {label}: {result['docs_only']}", flush=True)
    return result


def repeated_runs(count: int, workdir: Path) -> dict[str, Any]:
    """The README test command `count` times in a row; every failed test of every run."""
    runs = []
    for index in range(count):
        print(f"bench.gates: README test command, run {index + 1}/{count}", flush=True)
        timed = _run_timed(
            [sys.executable, "dev.py", "test"], ROOT, dict(os.environ), workdir / f"run{index}.log"
        )
        counted = tests_counted(ROOT, quality_gates()) or {}
        runs.append(
            {
                "exit_code": timed["exit_code"],
                "wall_s": timed["wall_s"],
                "passed": counted.get("passed"),
                "failed": counted.get("failed", []),
            }
        )
        print(f"bench.gates: run {index + 1}: {runs[-1]}", flush=True)
    return {
        "runs": runs,
        "green": sum(1 for r in runs if r["exit_code"] == 0),
        "failed_tests": sorted({t for r in runs for t in r["failed"]}),
    }


def summary(results: dict[str, Any]) -> str:
    lines = ["", "bench.gates"]
    gates = results.get("gates")
    if gates:
        lines.append(
            f"  gates{'' if gates['e2e'] else ' without the e2e tests'} serial "
            f"{gates['serial']['wall_s']} s, parallel "
            f"{gates['parallel']['wall_s']} s: ratio {gates['ratio']} (goal <= 0.6)"
        )
        for run in ("serial", "parallel"):
            cpu = gates[run].get("cpu")
            if cpu:
                lines.append(
                    f"    {run}: {cpu['cpu_s']} s of CPU, {cpu['mean_cores_busy']} of "
                    f"{cpu['cores']} cores busy on average"
                )
    for label in ("baseline", "head"):
        job = results.get("main_job", {}).get(label)
        if job:
            lines.append(
                f"  main job at {job['sha'][:12]} ({label}): {job['deploy']['wall_s']} s, "
                f"exit {job['deploy']['exit_code']} (install {job['install_s']} s, excluded)"
            )
            docs = job.get("docs_only")
            if docs:
                lines.append(
                    f"  docs-only commit: step 5 after {docs['to_step_5_s']} s (goal <= 20), "
                    f"whole deploy {docs['wall_s']} s"
                )
    if "ratio" in results.get("main_job", {}):
        lines.append(f"  main job ratio head/baseline: {results['main_job']['ratio']}")
    runs = results.get("runs")
    if runs:
        lines.append(
            f"  README test command: {runs['green']}/{len(runs['runs'])} runs green; "
            f"failed tests: {', '.join(runs['failed_tests']) or 'none'}"
        )
    return "\n".join(lines)


def main(
    out: str = "reports/bench-gates.json",
    gates: bool = True,
    baseline: str = "",
    runs: int = 0,
    coverage: int = 90,
    main_job_head: bool = False,
    e2e: bool = True,
) -> int:
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
    }
    workdir = Path(tempfile.mkdtemp(prefix="drydock-bench-gates-"))
    if gates:
        serial = time_gates("the gates one after the other", serial_gates(coverage, e2e))
        parallel = time_gates("the gates concurrently", quality_gates(coverage, e2e=e2e))
        results["gates"] = {
            "e2e": e2e,
            "serial": serial,
            "parallel": parallel,
            "ratio": round(parallel["wall_s"] / serial["wall_s"], 2),
        }
    if baseline or main_job_head:
        job: dict[str, Any] = {}
        if baseline:
            job["baseline"] = main_job("baseline", baseline, workdir, False)
        job["head"] = main_job("head", "HEAD", workdir, True)
        if baseline and job["head"]["deploy"]["exit_code"] == 0:
            job["ratio"] = round(
                job["head"]["deploy"]["wall_s"] / job["baseline"]["deploy"]["wall_s"], 2
            )
        results["main_job"] = job
    if runs:
        results["runs"] = repeated_runs(runs, workdir)
    path = ROOT / out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results))
    print(f"results: {path}; logs: {workdir}")
    return 0
