"""The drills' HTML. The restore drill: its phases as one bar against the RTO, and the trend
over the drills on disk (RTO, RPO and snapshot size per drill). The point-in-time recovery
drill (`drill.pitr`): its restore's phases (base backup copy, WAL staging, replay, then the
replica turning ready; on a managed database the restore until available, then ready) against
its RTO, the RPO, and the trend over the PITR drills on disk (RTO, RPO and replay rate)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.reports import page

PHASE_COLOURS = {
    "dump": "#0969da",
    "restore": "#8250df",
    "verify": "#1a7f37",
    "replica": "#9a6700",
    "smoke": "#bf3989",
    # the point-in-time drill's
    "base backup copy": "#0969da",
    "WAL staging": "#9a6700",
    "replay": "#8250df",
    "restore to available": "#8250df",
    "replica ready": "#1a7f37",
}
RTO_TRACE = "RTO s"
RPO_TRACE = "RPO s"
SIZE_TRACE = "size MB"
REPLAY_TRACE = "replay MB/s"


def phases_figure(report: Mapping[str, Any]) -> Any:
    """The phases end to end on one horizontal bar, and the RTO as a line across it."""
    from plotly import graph_objects as go

    fig = go.Figure()
    for phase in report.get("phases") or []:
        fig.add_trace(
            go.Bar(
                x=[float(phase["seconds"])],
                y=["this drill"],
                orientation="h",
                name=str(phase["name"]),
                marker={"color": PHASE_COLOURS.get(str(phase["name"]), "#57606a")},
                text=[f"{phase['name']} {float(phase['seconds']):.1f} s"],
                textposition="inside",
            )
        )
    rto = report.get("rto_s")
    if rto is not None:
        fig.add_vline(x=float(rto), line={"color": "#cf222e", "dash": "dash", "width": 2})
        fig.add_trace(
            go.Scatter(
                x=[float(rto)],
                y=["this drill"],
                mode="markers",
                name=f"RTO {float(rto):.1f} s",
                marker={"color": "#cf222e", "symbol": "line-ns-open", "size": 30},
            )
        )
    fig.update_layout(
        barmode="stack",
        height=320,
        legend={"orientation": "h", "y": -0.45},
        template="plotly_white",
        xaxis_title="seconds",
        title="Phases against the RTO",
    )
    return fig


def trend_figure(
    drills: Sequence[Mapping[str, Any]],
    bar: tuple[str, str, str] = (SIZE_TRACE, "size_mb", "MB"),
    title: str = "Past drills",
) -> Any:
    """RTO and RPO (seconds, left axis) and `bar` (trace name, the drill's key, the right
    axis' title: the snapshot size by default) per drill."""
    from plotly import graph_objects as go

    labels = [f"{d['started_at']} {d['id']}"[:40] for d in drills]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=labels, y=[d.get("rto_s") for d in drills], name=RTO_TRACE, mode="lines+markers"
        )
    )
    fig.add_trace(
        go.Scatter(
            x=labels, y=[d.get("rpo_s") for d in drills], name=RPO_TRACE, mode="lines+markers"
        )
    )
    name, key, axis = bar
    fig.add_trace(
        go.Bar(x=labels, y=[d.get(key) for d in drills], name=name, yaxis="y2", opacity=0.35)
    )
    fig.update_layout(
        height=380,
        template="plotly_white",
        title=title,
        yaxis={"title": "seconds", "rangemode": "tozero"},
        yaxis2={"title": axis, "overlaying": "y", "side": "right", "rangemode": "tozero"},
        xaxis={"type": "category"},
    )
    return fig


def past_drills(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The history's lines, with the snapshot size from each drill's own JSON report where
    it is still on disk (the history line does not carry it)."""
    drills = []
    for line in history:
        size = None
        try:
            full = json.loads(Path(str(line.get("report"))).read_text())
            size = round(float(full["snapshot"]["size_bytes"]) / 1e6, 2)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        drills.append({**line, "size_mb": size})
    return drills


def html(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> str:
    verdict = "passed" if report.get("ok") else "FAILED"
    rto, rpo = report.get("rto_s"), report.get("rpo_s")
    rto_text = "-" if rto is None else f"{rto:.1f} s"
    rpo_text = "-" if rpo is None else f"{rpo:.1f} s"
    facts = [
        f"{report.get('source')} restored into {report.get('target')} "
        f"(scratch {report.get('scratch_database') or '-'})",
        f"RTO {rto_text}; RPO {rpo_text} ({report.get('rpo_basis') or 'not measured'})",
        f"{report.get('tables', 0)} tables, {report.get('rows', 0):,} rows verified",
    ]
    drills = past_drills(history)
    phases = [
        (
            p["name"],
            f"{float(p['seconds']):.2f}",
            ("ok", "yes") if p["ok"] else ("bad", "NO"),
            p.get("detail", ""),
        )
        for p in report.get("phases") or []
    ]
    return page.render(
        f"Restore drill {report.get('id')}: {verdict}",
        facts,
        [
            ("Phases", phases_figure(report)),
            ("Phase details", page.table(("phase", "seconds", "ok", "detail"), phases)),
            (f"Trend over {len(drills)} drill(s)", trend_figure(drills)),
        ],
    )


def write(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]], path: Path) -> Path:
    return page.write(path, html(report, history))


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f} s"


def pitr_phases(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The restore's phases, end to end, as the drill measured them; the last one is the rest
    of the RTO (the replica on the copy turning ready), so the bar ends at the RTO."""
    restore = report.get("restore") or {}
    durations = restore.get("durations") or {}
    phases: list[dict[str, Any]] = [
        {"name": name, "seconds": float(durations[key]), "ok": True, "detail": detail}
        for name, key, detail in (
            ("base backup copy", "copy_s", f"base backup {restore.get('backup_id', '-')}"),
            ("WAL staging", "stage_s", "the archived WAL up to T, staged and checked"),
            ("replay", "replay_s", "WAL replayed to T, then promoted"),
        )
        if durations.get(key) is not None
    ]
    if not durations and restore.get("available_s") is not None:
        phases.append(
            {
                "name": "restore to available",
                "seconds": float(restore["available_s"]),
                "ok": True,
                "detail": f"copy instance {restore.get('instance', '-')}",
            }
        )
    rto = report.get("rto_s")
    rest = None if rto is None else float(rto) - sum(p["seconds"] for p in phases)
    if rest is not None and rest > 0:
        phases.append(
            {
                "name": "replica ready",
                "seconds": round(rest, 3),
                "ok": True,
                "detail": "a replica on the copy started and turned ready (the rest of the RTO)",
            }
        )
    if not report.get("ok") and phases:  # the drill failed: its last phase is where
        phases[-1] = {**phases[-1], "ok": False}
    return phases


def past_pitr_drills(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The PITR history's lines, with the replay rate from each drill's JSON report where it
    is still on disk (the history line does not carry it)."""
    drills = []
    for line in history:
        rate = None
        try:
            full = json.loads(Path(str(line.get("report"))).read_text())
            rate = None if full.get("replay_mb_s") is None else float(full["replay_mb_s"])
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        drills.append({**line, "replay_mb_s": rate})
    return drills


def pitr_html(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> str:
    verdict = "passed" if report.get("ok") else "FAILED"
    phases = pitr_phases(report)
    facts = [
        f"{report.get('environment')} ({report.get('target')}) restored to "
        f"T = {report.get('point') or '-'}",
        f"RTO {_seconds(report.get('rto_s'))} ({report.get('rto_basis')})",
        f"RPO {_seconds(report.get('rpo_s'))} ({report.get('rpo_basis')}); newest transaction "
        f"in the copy {report.get('recovered_to') or '-'}",
        f"orders written / before T / in the copy: {report.get('orders_written', 0)} / "
        f"{report.get('orders_expected', 0)} / {report.get('orders_in_copy', 0)}",
    ]
    if report.get("replay_mb_s") is not None:
        facts.append(f"replay {report['replay_mb_s']} MB/s")
    problems = ([report["failure"]] if report.get("failure") else []) + list(
        report.get("mismatches") or []
    )
    drills = past_pitr_drills(history)
    rows = [
        (p["name"], f"{p['seconds']:.2f}", ("ok", "yes") if p["ok"] else ("bad", "NO"), p["detail"])
        for p in phases
    ]
    sections: list[tuple[str, Any]] = [
        ("Phases against the RTO", phases_figure({"phases": phases, "rto_s": report.get("rto_s")})),
        ("Phase details", page.table(("phase", "seconds", "ok", "detail"), rows)),
    ]
    if problems:
        sections.append(("Problems", page.table(("problem",), [(("bad", p),) for p in problems])))
    sections.append(
        (
            f"Trend over {len(drills)} PITR drill(s)",
            trend_figure(drills, (REPLAY_TRACE, "replay_mb_s", "MB/s"), "Past PITR drills"),
        )
    )
    return page.render(
        f"Point-in-time recovery drill {report.get('id')}: {verdict}", facts, sections
    )


def write_pitr(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]], path: Path) -> Path:
    return page.write(path, pitr_html(report, history))
