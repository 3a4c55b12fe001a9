"""Where a cluster lives when the pipelines run as root (CI): outside the state dir, under
/var/lib/drydock, and never shared with an earlier state dir that stood at the same path."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from pipelines.postgres.cluster import ROOT_DATA_ROOT, data_home

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(os.geteuid() != 0, reason="clusters live in the state dir unless root"),
]


def test_a_state_dir_made_again_at_the_same_path_gets_a_new_cluster(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    first = data_home(state, "postgres")
    assert first == data_home(state, "postgres"), "stable while the state dir lives"
    assert first.parent.parent == ROOT_DATA_ROOT
    shutil.rmtree(state)
    state.mkdir()
    assert data_home(state, "postgres") != first


def test_a_cluster_made_before_the_id_existed_is_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    key = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
    legacy = ROOT_DATA_ROOT / key
    (legacy / "postgres").mkdir(parents=True)
    try:
        assert data_home(state, "postgres") == legacy / "postgres"
    finally:
        shutil.rmtree(legacy)
