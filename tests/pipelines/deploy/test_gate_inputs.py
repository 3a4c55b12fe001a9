"""The files the content key leaves out are read by no gate: no test, no code the tests run,
and no gate command names one as a path. If this fails, either stop reading the file or take
its pattern out of `NOT_READ`, so that a change to it runs the gates again."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from pipelines.deploy.gates.inputs import committed_files, read_by_gates

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SOURCES = ("tests", "pipelines", "service", "infra", "tasks.py", "dev.py")
# Files that name left-out files without reading the repository's own: the patterns
# themselves, and tests and a bench that write such files in a throwaway repository.
NOT_READERS = {
    Path(__file__).resolve(),
    ROOT / "pipelines/deploy/gates/inputs.py",
    ROOT / "tests/pipelines/deploy/test_gate_record.py",
    ROOT / "tests/pipelines/deploy/gate_helpers.py",
    ROOT / "tests/pipelines/deploy/test_security.py",
    ROOT / "pipelines/bench/gates_bench.py",
}


def _left_out_names() -> set[str]:
    """The path and the file name of every committed file the key leaves out."""
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    left_out = [path for path in listed if not read_by_gates(path)]
    return {*left_out, *(Path(path).name for path in left_out)}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_no_source_names_a_file_the_content_key_leaves_out() -> None:
    names = _left_out_names()
    assert "docs/RUNBOOK.md" in names and "README.md" not in names
    offenders = []
    for source in SOURCES:
        paths = [ROOT / source] if source.endswith(".py") else (ROOT / source).rglob("*.py")
        for path in paths:
            if path.resolve() in NOT_READERS:
                continue
            tree = ast.parse(path.read_text(), str(path))
            skip = _docstrings(tree)
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in skip
                    and node.value.strip() in names
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not offenders, "\n".join(offenders)


def test_the_key_covers_code_tests_and_config_but_not_docs() -> None:
    covered = {path for path, _ in committed_files(ROOT, "HEAD")}
    for needed in ("pyproject.toml", "tasks.py", "tests/conftest.py", ".ci/run", "dev.py"):
        assert needed in covered
    assert "README.md" in covered  # its deploy-role permission list is checked
    assert not any(p.startswith("docs/") for p in covered)
    assert read_by_gates("service/app.py") and not read_by_gates("docs/RUNBOOK.md")
