"""The restore drill's HTML: this drill's phases as one bar against the RTO, and the trend
over the drills on disk (RTO, RPO and snapshot size per drill)."""

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
}
RTO_TRACE = "RTO s"
RPO_TRACE = "RPO s"
SIZE_TRACE = "size MB"


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


def trend_figure(drills: Sequence[Mapping[str, Any]]) -> Any:
    """RTO and RPO (seconds, left axis) and snapshot size (MB, right axis) per drill."""
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
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[d.get("size_mb") for d in drills],
            name=SIZE_TRACE,
            yaxis="y2",
            opacity=0.35,
        )
    )
    fig.update_layout(
        height=380,
        template="plotly_white",
        title="Past drills",
        yaxis={"title": "seconds", "rangemode": "tozero"},
        yaxis2={"title": "MB", "overlaying": "y", "side": "right", "rangemode": "tozero"},
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
