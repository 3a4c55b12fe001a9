"""`invoke infra.*`: the missing-CLI message, exit codes, and the task wiring."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipelines import infra_ops, provision
from tests.infra.harness import CERTIFICATE, REPOSITORY, ROOT

pytestmark = pytest.mark.unit


class FakeStack:
    """Stands in for `pulumi.automation.Stack`; records what was asked of it."""

    def __init__(self, summary: dict[str, int]) -> None:
        self.summary = summary
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.config: dict[str, Any] = {}

    def preview(self, **kwargs: Any) -> Any:
        self.calls.append(("preview", kwargs))
        return SimpleNamespace(change_summary=self.summary)

    def preview_refresh(self, **kwargs: Any) -> Any:
        self.calls.append(("preview_refresh", kwargs))
        return SimpleNamespace(change_summary=self.summary)

    def up(self, **kwargs: Any) -> None:
        self.calls.append(("up", kwargs))

    def set_config(self, key: str, value: Any, path: bool = False) -> None:
        self.config[key] = value.value

    def outputs(self) -> dict[str, Any]:
        return {
            "service_url": SimpleNamespace(value="https://x", secret=False),
            "token": SimpleNamespace(value="hidden", secret=True),
        }


@pytest.fixture
def no_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def fake_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeStack:
    stack = FakeStack({"same": 90})
    cli = tmp_path / "bin" / "pulumi"
    cli.parent.mkdir()
    cli.write_text("#!/bin/sh\nexit 0\n")
    cli.chmod(cli.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(cli.parent))
    monkeypatch.setattr(infra_ops, "select_stack", lambda name, found: stack)
    real_load = infra_ops.load_stack_file

    def with_aws_settings(name: str) -> Any:
        from dataclasses import replace

        return replace(real_load(name), certificate_arn=CERTIFICATE, github_repository=REPOSITORY)

    monkeypatch.setattr(infra_ops, "load_stack_file", with_aws_settings)
    return stack


@pytest.mark.parametrize("action", ["preview", "up", "drift"])
def test_without_the_cli_each_task_says_how_to_install_it(
    action: str, no_cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert infra_ops.main(action, "staging") == infra_ops.USAGE
    err = capsys.readouterr().err
    assert "The Pulumi CLI is not installed" in err
    assert "curl -fsSL https://get.pulumi.com | sh" in err
    assert "https://www.pulumi.com/docs/iac/download-install/" in err
    assert "Traceback" not in err


def test_cli_installed_in_home_is_found_without_path(no_cli: Path) -> None:
    cli = no_cli / ".pulumi" / "bin" / "pulumi"
    cli.parent.mkdir(parents=True)
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    assert infra_ops.pulumi_cli() == cli


def test_missing_certificate_is_reported_before_pulumi_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def never(*_: Any) -> None:
        raise AssertionError("pulumi must not run")

    monkeypatch.setattr(infra_ops, "pulumi_cli", lambda: Path("/opt/pulumi/bin/pulumi"))
    monkeypatch.setattr(infra_ops, "select_stack", never)
    # The committed stack file has no certificate until the platform team sets one.
    assert infra_ops.main("preview", "staging") == infra_ops.USAGE
    assert "Pulumi.staging.yaml: drydock:certificateArn is required" in capsys.readouterr().err


def test_preview_runs_the_policy_pack(fake_stack: FakeStack) -> None:
    assert infra_ops.main("preview", "staging", out=lambda _: None) == infra_ops.OK
    ((call, kwargs),) = fake_stack.calls
    assert call == "preview"
    assert kwargs["policy_packs"] == [str(ROOT / "infra" / "policy")]


def test_up_without_yes_only_previews(fake_stack: FakeStack) -> None:
    lines: list[str] = []
    assert infra_ops.main("up", "staging", out=lines.append) == infra_ops.OK
    assert [c for c, _ in fake_stack.calls] == ["preview"]
    assert "run again with --yes" in lines[-1]


def test_up_sets_the_release_image_and_hides_secret_outputs(fake_stack: FakeStack) -> None:
    lines: list[str] = []
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/drydock-staging@sha256:" + "0" * 64
    code = infra_ops.main("up", "staging", out=lines.append, yes=True, image=image)
    assert code == infra_ops.OK
    assert fake_stack.config == {"drydock:image": image}
    assert [c for c, _ in fake_stack.calls] == ["up"]
    assert lines == ["service_url = https://x", "token = [secret]"]


def test_drift_exits_non_zero_when_aws_differs(fake_stack: FakeStack) -> None:
    assert infra_ops.main("drift", "staging", out=lambda _: None) == infra_ops.OK
    fake_stack.summary = {"same": 80, "update": 2, "delete": 1}
    lines: list[str] = []
    assert infra_ops.main("drift", "staging", out=lines.append) == infra_ops.DRIFT
    assert lines[-1].startswith("drift detected: {'delete': 1, 'update': 2}")
    assert fake_stack.calls[-1][0] == "preview_refresh"


def test_failed_pulumi_command_is_one_message(
    fake_stack: FakeStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pulumi.automation.errors import CommandError

    def fail(**_: Any) -> None:
        raise CommandError("code: 255\n stderr: error: no stack named 'staging' found")

    monkeypatch.setattr(fake_stack, "preview", fail)
    assert infra_ops.main("preview", "staging") == infra_ops.FAILED
    assert "pulumi preview failed for stack staging" in capsys.readouterr().err


def test_tasks_are_registered_and_listing_them_imports_no_pulumi() -> None:
    code = (
        "import sys, tasks\n"
        "names = set(tasks.ns.collections['infra'].tasks)\n"
        "assert names == {'preview', 'up', 'drift', 'scan'}, names\n"
        "assert not [m for m in sys.modules if m.startswith('pulumi')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_up_after_a_deploy_keeps_the_running_release(
    fake_stack: FakeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config change applied with `infra.up` must not undo a deploy: the image the service
    runs is written into the stack config first, so the task definition Pulumi builds runs
    the same code (tests/infra/test_container_service.py: its image is that config)."""
    deployed = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/drydock-staging@sha256:" + "d" * 64
    monkeypatch.setattr(provision, "deployed_image", lambda stack: deployed)
    lines: list[str] = []
    assert provision.up("staging", out=lines.append, yes=True) == infra_ops.OK
    assert fake_stack.config == {"drydock:image": deployed}
    assert lines[0].startswith(f"keeping the deployed release {deployed}")


def test_up_before_any_deploy_keeps_the_stack_config(
    fake_stack: FakeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provision, "deployed_image", lambda stack: None)
    assert provision.up("staging", out=lambda _: None, yes=True) == infra_ops.OK
    assert fake_stack.config == {}
