"""The shape of `pipelines/`, enforced: no import cycles, and nothing above `targets/`
names a target (`get_target` is the way in). Each check runs on the real tree, and on a
small package built here with the violation in it, so a check that found nothing because
it looked at nothing would fail too."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import grimp
import pytest

from infra.spec import ROOT

pytestmark = pytest.mark.unit

TARGET_PACKAGES = ("targets.local", "targets.aws")
# pipelines.bench measures the local target's own parts (its processes from cold, its drill
# on a shared cluster), so it alone above targets/ may name the local target. Never aws.
ALLOWED = {"bench": ("targets.local",)}


def graph_of(package: str) -> dict[str, set[str]]:
    """Every module of `package` and the modules of `package` it imports, wherever the
    import statement stands: module level, inside a function, or under TYPE_CHECKING."""
    graph = grimp.build_graph(package, cache_dir=None)
    return {
        module: {m for m in graph.find_modules_directly_imported_by(module) if m in graph.modules}
        for module in graph.modules
    }


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def boundary_violations(
    graph: Mapping[str, Iterable[str]], package: str = "pipelines"
) -> list[str]:
    """`importer -> imported` for each module outside targets/ that imports a target."""
    targets = [f"{package}.{name}" for name in TARGET_PACKAGES]
    violations = []
    for importer, imported in sorted(graph.items()):
        if _within(importer, f"{package}.targets"):
            continue
        allowed = [
            f"{package}.{target}"
            for above, names in ALLOWED.items()
            if _within(importer, f"{package}.{above}")
            for target in names
        ]
        for module in sorted(imported):
            if any(_within(module, t) for t in targets) and not any(
                _within(module, a) for a in allowed
            ):
                violations.append(f"{importer} -> {module}")
    return violations


def task_file_violations(path: Path, package: str = "pipelines") -> list[str]:
    """The same rule for tasks.py, which is a file, not a package."""
    targets = [f"{package}.{name}" for name in TARGET_PACKAGES]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found += [n for n in names if any(_within(n, t) for t in targets)]
    return found


def test_pipelines_has_no_import_cycle() -> None:
    assert cycles(graph_of("pipelines")) == []


def test_nothing_above_the_targets_names_one() -> None:
    assert boundary_violations(graph_of("pipelines")) == []
    assert task_file_violations(ROOT / "tasks.py") == []


def test_the_targets_never_import_each_other() -> None:
    local, aws = "pipelines.targets.local", "pipelines.targets.aws"
    crossings = [
        f"{importer} -> {imported}"
        for importer, imports in graph_of("pipelines").items()
        for imported in imports
        if (_within(importer, local) and _within(imported, aws))
        or (_within(importer, aws) and _within(imported, local))
    ]
    assert crossings == []


def test_infra_and_the_service_never_import_the_pipelines() -> None:
    for package in ("infra", "service"):
        graph = grimp.build_graph(package, "pipelines", cache_dir=None)
        leaks = [
            f"{importer} -> {imported}"
            for importer in graph.find_descendants(package) | {package}
            for imported in graph.find_modules_directly_imported_by(importer)
            if _within(imported, "pipelines")
        ]
        assert leaks == []


# -- the checks find what they look for --------------------------------------------------


def _package(root: Path, files: Mapping[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`samplepipes`: a target protocol, a local target and a command above them."""
    _package(
        tmp_path,
        {
            "samplepipes/__init__.py": "",
            "samplepipes/targets/__init__.py": "",
            "samplepipes/targets/base.py": "class Target: ...\n",
            "samplepipes/targets/local/__init__.py": "",
            "samplepipes/targets/local/environment.py": (
                "from samplepipes.targets.base import Target\n"
            ),
            "samplepipes/targets/local/status.py": "",
            "samplepipes/commands.py": "from samplepipes.targets import base\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("samplepipes")]:
        del sys.modules[name]


def test_a_clean_sample_passes_both_checks(sample: Path) -> None:
    graph = graph_of("samplepipes")
    assert "samplepipes.commands" in graph  # the graph holds the modules it should
    assert cycles(graph) == [] and boundary_violations(graph, "samplepipes") == []


def test_a_command_that_names_a_target_is_a_violation(sample: Path) -> None:
    (sample / "samplepipes/commands.py").write_text(
        "def go() -> None:\n    from samplepipes.targets.local import environment\n"
    )
    assert boundary_violations(graph_of("samplepipes"), "samplepipes") == [
        "samplepipes.commands -> samplepipes.targets.local.environment"
    ]


def test_a_type_checking_import_back_is_a_cycle(sample: Path) -> None:
    (sample / "samplepipes/targets/local/environment.py").write_text(
        "from samplepipes.targets.local import status\n"
    )
    (sample / "samplepipes/targets/local/status.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from samplepipes.targets.local.environment import Environment\n"
    )
    assert cycles(graph_of("samplepipes")) == [
        ["samplepipes.targets.local.environment", "samplepipes.targets.local.status"]
    ]


def test_tasks_file_naming_a_target_is_a_violation(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.py"
    tasks.write_text("def t():\n    from pipelines.targets.aws.target import AwsTarget\n")
    assert task_file_violations(tasks) == [
        "pipelines.targets.aws.target",
        "pipelines.targets.aws.target.AwsTarget",
    ]
