"""Deploy step 2's scanners (`invoke security.scan`): pip-audit, bandit and the infra scan
(checkov over each Pulumi stack's plan, see `iac/scan.py`), and an OSV-Scanner file taken as
it is. Their artifacts go to `reports/security/` with `scan.json`, the manifest saying when
each was made, for which commit and content key, by which tool version, and whether the tool
could do its job ("unaudited" when pip-audit cannot reach a vulnerability database).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.deploy.security.iac import scan as infra_scan

ARTIFACTS_DIR = Path("reports") / "security"
POLICY = Path("security") / "policy.yaml"
MANIFEST = "scan.json"
FILES = {
    "pip-audit": "pip-audit.json",
    "bandit": "bandit.json",
    "osv-scanner": "osv-scanner.json",
    "checkov": f"infra/{infra_scan.MANIFEST}",
}
BANDIT_PATHS = ("service", "pipelines", "infra")
SCAN_TIMEOUT_S = 600
# The first infra scan on a machine also installs checkov into its own venv.
INFRA_SCAN_TIMEOUT_S = 1800

Runner = Callable[..., subprocess.CompletedProcess[str]]


def iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def parse_iso(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _run_tool(
    argv: Sequence[str], root: Path, runner: Runner, timeout: float = SCAN_TIMEOUT_S
) -> tuple[int | None, str]:
    try:
        proc = runner(
            list(argv),
            cwd=root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s"
    except OSError as exc:
        return None, str(exc)
    return proc.returncode, (proc.stderr or "").strip()[-2000:]


def _pip_audit(root: Path, out: Path, runner: Runner) -> dict[str, Any]:
    path = out / FILES["pip-audit"]
    path.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "pip_audit", "-f", "json", "--progress-spinner", "off"]
    argv += ["--skip-editable", "-o", str(path)]
    started = time.time()
    code, stderr = _run_tool(argv, root, runner)
    entry: dict[str, Any] = {"command": " ".join(argv), "exit_status": code}
    entry["started"] = iso(started)
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        document = None
    if document is None:
        entry.update(status="unaudited", error=stderr or "pip-audit wrote no JSON")
    else:
        deps = document.get("dependencies", [])
        skipped = [d for d in deps if d.get("skip_reason")]
        if deps and len(skipped) == len(deps):
            # Every lookup failed: the vulnerability database was unreachable.
            entry.update(status="unaudited", error=skipped[0]["skip_reason"])
        else:
            entry.update(status="ok" if not skipped else "partial", error=None)
        entry["skipped"] = len(skipped)
        entry["dependencies"] = len(deps)
    entry["finished"] = iso(time.time())
    entry["version"] = _version("pip-audit")
    return entry


def _bandit(root: Path, out: Path, runner: Runner) -> dict[str, Any]:
    path = out / FILES["bandit"]
    path.unlink(missing_ok=True)
    paths = [p for p in BANDIT_PATHS if (root / p).exists()]
    argv = [sys.executable, "-m", "bandit", "-r", *paths, "-f", "json", "-q", "-o", str(path)]
    started = time.time()
    code, stderr = _run_tool(argv, root, runner)
    # bandit exits 1 when it found issues; the JSON is what counts.
    ok = path.exists() and code in (0, 1)
    return {
        "command": " ".join(argv),
        "exit_status": code,
        "status": "ok" if ok else "error",
        "error": None if ok else stderr or "bandit wrote no JSON",
        "started": iso(started),
        "finished": iso(time.time()),
        "version": _version("bandit"),
    }


def _checkov(root: Path, out: Path, runner: Runner) -> dict[str, Any]:
    """The infra scan in a process of its own (it runs the Pulumi program under mocks).
    Its exit status is 1 when a finding blocks; the manifest it writes is what counts."""
    manifest = out / FILES["checkov"]
    manifest.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "pipelines.deploy.security.iac", "--root", str(root)]
    argv += ["--out", str(manifest.parent)]
    started = time.time()
    code, stderr = _run_tool(argv, root, runner, timeout=INFRA_SCAN_TIMEOUT_S)
    ok = manifest.exists() and code in (0, 1)
    try:
        version = json.loads(manifest.read_text()).get("checkov", "unknown") if ok else None
    except ValueError:
        ok, version = False, None
    return {
        "command": " ".join(argv),
        "exit_status": code,
        "status": "ok" if ok else "error",
        "error": None if ok else stderr or "the infra scan wrote no manifest",
        "started": iso(started),
        "finished": iso(time.time()),
        "version": version,
    }


def _osv(source: Path, out: Path) -> tuple[dict[str, Any], float]:
    """OSV-Scanner runs elsewhere (it is a Go binary); its JSON is taken as it is."""
    document = json.loads(source.read_text())
    if not isinstance(document, dict) or "results" not in document:
        raise ValueError(f"{source} is not OSV-Scanner JSON output (no `results`)")
    made = source.stat().st_mtime
    if source.resolve() != (out / FILES["osv-scanner"]).resolve():
        shutil.copyfile(source, out / FILES["osv-scanner"])
    return {"command": f"ingested {source}", "status": "ok", "error": None}, made


def scan(
    root: Path,
    sha: str,
    osv_file: Path | None = None,
    runner: Runner = subprocess.run,
    out: Path | None = None,
) -> dict[str, Any]:
    """Run pip-audit, bandit and the infra scan (where there is a Pulumi program), take an
    OSV-Scanner file if given, write the manifest."""
    out = out or root / ARTIFACTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    tools: dict[str, Any] = {
        "pip-audit": {**_pip_audit(root, out, runner), "file": FILES["pip-audit"]},
        "bandit": {**_bandit(root, out, runner), "file": FILES["bandit"]},
    }
    if (root / "Pulumi.yaml").exists():
        tools["checkov"] = {**_checkov(root, out, runner), "file": FILES["checkov"]}
    osv_source = osv_file or (out / FILES["osv-scanner"])
    if osv_source.exists():
        entry, made = _osv(osv_source, out)
        tools["osv-scanner"] = {**entry, "file": FILES["osv-scanner"], "finished": iso(made)}
    # What else was in the tree besides the commit (the scan reads files, not git).
    changed = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=False
    ).stdout.splitlines()
    manifest = {
        "sha": sha,
        "content_key": scan_key(root, sha),
        "scanned_at": iso(time.time()),
        "changed_files": [line[3:] for line in changed if not line[3:].startswith("reports/")],
        "tools": tools,
    }
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


def scan_key(root: Path, sha: str) -> str | None:
    """The content key of what the scanners read: the commit's files but docs, and the
    installed packages (pipelines/deploy/gates/inputs.py). A commit that changes only docs
    has the key of the commit before it, so that commit's scan describes it too."""
    from pipelines.deploy.gates.inputs import InputsError, inputs_for

    try:
        return inputs_for(root, sha, ["security-scan"]).key
    except InputsError:
        return None


def same_content(manifest: Mapping[str, Any], root: Path, sha: str) -> bool:
    """Whether the scan in `manifest` read exactly what `sha` would give the scanners."""
    key = manifest.get("content_key")
    return bool(key) and key == scan_key(root, sha)


def scan_command(root: Path, osv: str = "") -> int:
    """`invoke security.scan`: the scanners over this checkout, into reports/security/.
    The infra scan's findings are the review's to judge, so its exit status is not ours."""
    from pipelines.releases import resolve

    manifest = scan(root, resolve("HEAD", root), Path(osv) if osv else None)
    for name, entry in manifest["tools"].items():
        error = f": {entry['error']}" if entry.get("error") else ""
        print(f"security.scan {name}: {entry['status']}{error}")
    print(f"artifacts: {root / ARTIFACTS_DIR}")
    return 0
