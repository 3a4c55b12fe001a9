"""Release artifacts: one immutable build of `service/`, promoted unchanged from staging to
production. Locally an artifact is a directory holding the service's source at one commit
(`git archive`), identified by `<version>+<sha12>`; replicas import it ahead of anything
installed. On AWS the same role is played by an image digest in ECR.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from importlib import metadata
from pathlib import Path

from pipelines.targets.base import Release, TargetError

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "release.json"
_VERSION = re.compile(r'^__version__ = "([^"]+)"', re.MULTILINE)


def git(*args: str, root: Path = ROOT) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise TargetError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def resolve(ref: str, root: Path = ROOT) -> str:
    try:
        return git("rev-parse", "--verify", f"{ref}^{{commit}}", root=root)
    except TargetError as exc:
        raise TargetError(f"{ref!r} is not a commit in {root}: {exc}") from None


def workspace_is_dirty(root: Path = ROOT) -> bool:
    return bool(git("status", "--porcelain", "--", "service", root=root))


def extract_tree(root: Path, sha: str, path: str, target: Path) -> bool:
    """Write `path` as committed at `sha` under `target`; False if git cannot archive it."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", sha, path], cwd=root, capture_output=True, check=False
    )
    if archive.returncode != 0:
        return False
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
        else:  # Python before 3.11.4 has no extraction filters: check what the filter would
            base = target.resolve()
            members = tar.getmembers()
            for member in members:
                inside = (base / member.name).resolve().is_relative_to(base)
                if not inside or not (member.isfile() or member.isdir()):
                    raise TargetError(f"refusing archive member {member.name!r} from git")
            for member in members:  # only once all are known safe: nothing half-written
                tar.extract(member, target)
    return True


def dependency_fingerprint() -> str:
    """What the artifact runs on: the installed distributions, by name and version."""
    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())
    return hashlib.sha256("\n".join(installed).encode()).hexdigest()[:16]


def _tree_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build(releases_dir: Path, ref: str | None = None, root: Path = ROOT) -> Release:
    """Build (or reuse) the artifact for `ref`; None means the working tree as it is."""
    releases_dir.mkdir(parents=True, exist_ok=True)
    sha = resolve(ref or "HEAD", root)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=releases_dir))
    try:
        if ref is None and workspace_is_dirty(root):
            shutil.copytree(
                root / "service", staging / "service", ignore=shutil.ignore_patterns("__pycache__")
            )
            suffix = ".dirty" + _tree_digest(staging)[:8]
        else:
            if not extract_tree(root, sha, "service", staging):
                raise TargetError(f"git archive {sha[:12]} service failed in {root}")
            suffix = ""
        match = _VERSION.search((staging / "service" / "__init__.py").read_text())
        version = match.group(1) if match else "0"
        release_id = f"{version}+{sha[:12]}{suffix}"
        target = releases_dir / release_id
        if (target / MANIFEST).exists():
            return load(target)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (staging / MANIFEST).write_text(
            json.dumps(
                {
                    "id": release_id,
                    "version": version,
                    "git_sha": sha,
                    "created_at": created,
                    "digest": _tree_digest(staging / "service"),
                    "dependencies": dependency_fingerprint(),
                },
                indent=2,
            )
        )
        for path in staging.rglob("*"):
            if path.is_file():
                path.chmod(0o444)  # immutable by convention and by mode
        os.replace(staging, target)
        return load(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load(artifact: Path) -> Release:
    data = json.loads((artifact / MANIFEST).read_text())
    return Release(
        id=data["id"],
        version=data["version"],
        git_sha=data["git_sha"],
        artifact=str(artifact),
        created_at=data["created_at"],
    )


def verify(release: Release) -> None:
    """Refuse an artifact whose bytes changed since it was built."""
    artifact = Path(release.artifact)
    data = json.loads((artifact / MANIFEST).read_text())
    if _tree_digest(artifact / "service") != data["digest"]:
        raise TargetError(
            f"release {release.id} at {artifact} was modified after it was "
            "built; delete it and build again"
        )
