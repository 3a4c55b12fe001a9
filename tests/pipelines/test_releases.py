"""Release artifacts from git, on Pythons with and without tarfile's extraction filters."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from pipelines.releases import ROOT, build, extract_tree, load, resolve, verify
from pipelines.targets.base import TargetError

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("with_filters", [True, False])
def test_a_committed_tree_is_extracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_filters: bool
) -> None:
    if not with_filters:  # Python 3.11.0 to 3.11.3, e.g. Debian 12's 3.11.2
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    assert extract_tree(ROOT, resolve("HEAD"), "service/migrations", tmp_path)
    assert (tmp_path / "service" / "migrations" / "env.py").is_file()
    assert not extract_tree(ROOT, resolve("HEAD"), "no/such/path", tmp_path / "x")


def test_a_release_is_built_once_and_refused_once_tampered(tmp_path: Path) -> None:
    release = build(tmp_path, "HEAD")
    assert release.id.endswith(release.git_sha[:12])
    assert build(tmp_path, "HEAD") == release, "the same commit is the same artifact"
    assert load(Path(release.artifact)) == release
    verify(release)
    target = Path(release.artifact) / "service" / "__init__.py"
    target.chmod(0o644)
    target.write_text(target.read_text() + "\n# changed\n")
    with pytest.raises(TargetError, match="modified after it was built"):
        verify(release)


def test_without_filters_a_link_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    repo = tmp_path / "repo"
    (repo / "service").mkdir(parents=True)
    (repo / "service" / "app.py").write_text("print('hi')\n")
    (repo / "service" / "passwd").symlink_to("/etc/passwd")
    identity = ["-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    for argv in (["init", "-q"], ["add", "."], [*identity, "commit", "-qm", "link"]):
        subprocess.run(["git", *argv], cwd=repo, check=True)
    out = tmp_path / "out"
    with pytest.raises(TargetError, match="refusing archive member 'service/passwd'"):
        extract_tree(repo, resolve("HEAD", repo), "service", out)
    assert not (out / "service" / "app.py").exists()
