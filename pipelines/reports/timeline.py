"""The timeline figure every report shares: requests/s, p50 and p95, and error rate per
second, with events as markers and windows (a bake, a fault) shaded. Where the report has
them, the service's own metrics (what the servers counted: each local scrape, each CloudWatch
minute) are drawn in the same panels as series of their own, dashed, named "server: ...".

Events are drawn by kind, one legend entry each, whatever the kind is: a step that records a
new kind of event (a canary stage, say) shows up without a change here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Series names, also what the browser test looks for in the rendered legend.
REQUESTS = "requests/s"
FAILED = "failed/s"
P50 = "p50 ms"
P95 = "p95 ms"
ERROR_RATE = "error rate %"
EVENT_PREFIX = "event: "
SERVER_REQUESTS = "server: requests/s"
SERVER_P95 = "server: p95 ms"
SERVER_ERROR_RATE = "server: error rate %"


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    label: str
    colour: str = "rgba(207, 34, 46, 0.15)"


def stamp(epoch: float) -> str:
    """Epoch seconds as plotly reads a date axis (UTC, milliseconds)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def windows_from_events(
    events: Sequence[Mapping[str, Any]], start_kind: str, end_kind: str, label: str
) -> list[Window]:
    """Pairs of start/end events (a bake's start and end) as shaded windows; a start without
    an end runs to the last event."""
    windows, opened = [], None
    last = max((float(e["at"]) for e in events), default=0.0)
    for event in sorted(events, key=lambda e: float(e["at"])):
        if event["kind"] == start_kind:
            opened = float(event["at"])
        elif event["kind"] == end_kind and opened is not None:
            windows.append(Window(opened, float(event["at"]), label, "rgba(9, 105, 218, 0.10)"))
            opened = None
    if opened is not None:
        windows.append(Window(opened, last, label, "rgba(9, 105, 218, 0.10)"))
    return windows


def figure(
    title: str,
    seconds: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]] = (),
    windows: Sequence[Window] = (),
    server: Sequence[Mapping[str, Any]] = (),
) -> Any:
    """`seconds` are `pipelines.traffic.timeline.Second` rows as dicts (t, requests, failed,
    p50_ms, p95_ms); `events` are dicts with at, kind, label (and env); `server` are
    `targets.base.ServerMetrics` rows as dicts (at, period_s, requests_per_s, error_rate,
    p95_s), drawn when there are any."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=("Requests per second", "Latency", "Error rate"),
    )
    x = [stamp(float(s["t"])) for s in seconds]
    requests = [int(s["requests"]) for s in seconds]
    failed = [int(s["failed"]) for s in seconds]
    rate = [100 * f / r if r else 0.0 for f, r in zip(failed, requests, strict=True)]
    series = [
        (REQUESTS, requests, 1, "#0969da"),
        (FAILED, failed, 1, "#cf222e"),
        (P50, [float(s["p50_ms"]) for s in seconds], 2, "#1a7f37"),
        (P95, [float(s["p95_ms"]) for s in seconds], 2, "#9a6700"),
        (ERROR_RATE, rate, 3, "#cf222e"),
    ]
    _add_lines(fig, x, series, marker={"size": 3}, line={"width": 1.5})
    _add_server(fig, server)
    server_rates = [float(p["requests_per_s"] or 0) for p in server]
    top = max([*requests, *server_rates], default=1) * 1.08 or 1.0
    _add_events(fig, events, top)
    for window in windows:
        fig.add_vrect(
            x0=stamp(window.start),
            x1=stamp(window.end),
            fillcolor=window.colour,
            line_width=0,
            layer="below",
            annotation_text=window.label,
            annotation_position="top left",
            row="all",
            col=1,
        )
    fig.update_yaxes(title_text="req/s", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="ms", rangemode="tozero", row=2, col=1)
    fig.update_yaxes(title_text="%", rangemode="tozero", row=3, col=1)
    fig.update_xaxes(type="date")
    fig.update_layout(
        title=title,
        height=720,
        hovermode="x unified",
        template="plotly_white",
        legend={"orientation": "v"},
        margin={"t": 80},
    )
    return fig


def _add_events(fig: Any, events: Sequence[Mapping[str, Any]], top: float) -> None:
    """One marker trace per event kind across the top of the first panel, and a dotted
    vertical line through every panel at each event."""
    from plotly import graph_objects as go

    kinds: dict[str, list[Mapping[str, Any]]] = {}
    for event in sorted(events, key=lambda e: float(e["at"])):
        kinds.setdefault(str(event["kind"]), []).append(event)
    symbols = ["diamond", "triangle-up", "square", "star", "x", "circle", "triangle-down"]
    for index, (kind, members) in enumerate(kinds.items()):
        labels = [f"{m['label']}" + (f" ({m['env']})" if m.get("env") else "") for m in members]
        fig.add_trace(
            go.Scatter(
                x=[stamp(float(m["at"])) for m in members],
                y=[top] * len(members),
                name=EVENT_PREFIX + kind,
                mode="markers",
                marker={"size": 11, "symbol": symbols[index % len(symbols)]},
                text=labels,
                hovertemplate="%{text}<extra>" + kind + "</extra>",
            ),
            row=1,
            col=1,
        )
        for member in members:
            fig.add_shape(
                type="line",
                x0=stamp(float(member["at"])),
                x1=stamp(float(member["at"])),
                y0=0,
                y1=1,
                xref="x",
                yref="paper",
                line={"width": 1, "dash": "dot", "color": "rgba(87, 96, 106, 0.6)"},
            )


def _scaled(value: Any, factor: float) -> float | None:
    return None if value is None else float(value) * factor


def _add_server(fig: Any, server: Sequence[Mapping[str, Any]]) -> None:
    """The service's own requests/s, p95 and error rate, dashed, beside the client's. A point
    without a value (no requests in its interval) leaves a gap, not a zero."""

    if not server:
        return
    x = [stamp(float(p["at"])) for p in server]
    series = [
        (SERVER_REQUESTS, [_scaled(p.get("requests_per_s"), 1) for p in server], 1, "#0550ae"),
        (SERVER_P95, [_scaled(p.get("p95_s"), 1000) for p in server], 2, "#bc4c00"),
        (SERVER_ERROR_RATE, [_scaled(p.get("error_rate"), 100) for p in server], 3, "#82071e"),
    ]
    _add_lines(
        fig,
        x,
        series,
        marker={"size": 4, "symbol": "square"},
        line={"width": 2, "dash": "dash"},
        connectgaps=False,
    )


def _add_lines(
    fig: Any,
    x: Sequence[Any],
    series: Sequence[tuple[str, object, int, str]],
    marker: dict[str, Any],
    line: dict[str, Any],
    **scatter: Any,
) -> None:
    """One line per (name, values, row, colour), in the timeline's rows."""
    import plotly.graph_objects as go

    for name, values, row, colour in series:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=values,
                name=name,
                mode="lines+markers",
                marker=marker,
                line={"color": colour, **line},
                **scatter,
            ),
            row=row,
            col=1,
        )
