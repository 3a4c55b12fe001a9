"""Structured logging: JSON lines in production, readable lines in development.

Any key that looks like a credential is redacted at any depth before a record is written, and
so is anything shaped like one in the message, its arguments, string fields and exception
text: bearer tokens, JWTs, `password=...` and `"password": "..."`, and the password of a
`scheme://user:password@` URL. All of it runs only when a record is formatted; the access
record, whose fields the edge builds without headers or bodies, skips it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

REDACTED = "[REDACTED]"
_SENSITIVE = re.compile(
    r"password|passwd|token|secret|authorization|api[_-]?key|cookie", re.IGNORECASE
)
_KEY = r"[\w-]*(?:password|passwd|secret|token|api[_-]?key)[\w-]*"
# (pattern, replacement), applied in order to every string a record writes.
_SCRUBS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host: keep the user, drop the password
    (re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@]+@", re.IGNORECASE), rf"\1{REDACTED}@"),
    (re.compile(r"\b(bearer\s+)[\w.~+/=-]+", re.IGNORECASE), rf"\1{REDACTED}"),
    # A JWT: header and payload are base64url JSON objects, so both start "ey".
    (re.compile(r"\bey[\w-]{8,}\.ey[\w-]{8,}\.[\w-]*"), REDACTED),
    # "password": "value", 'api_key': 'value', token="value"
    (
        re.compile(rf"([\"']?\b{_KEY}[\"']?\s*[:=]\s*)([\"'])(?:\\.|(?!\2).)*\2", re.IGNORECASE),
        rf"\1\2{REDACTED}\2",
    ),
    # password=value (up to whitespace or a separator)
    (re.compile(rf"(\b{_KEY}\s*=\s*)(?![\"'\s])[^\s&,;]+", re.IGNORECASE), rf"\1{REDACTED}"),
)


def scrub(text: str) -> str:
    """text with every credential-shaped part replaced by REDACTED."""
    for pattern, replacement in _SCRUBS:
        text = pattern.sub(replacement, text)
    return text


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


_verdicts: dict[str, bool] = {}


def _is_sensitive(key: object) -> bool:
    if not isinstance(key, str):
        return False
    verdict = _verdicts.get(key)
    if verdict is None:
        # Keys repeat from record to record; the regex runs once per distinct key.
        verdict = bool(_SENSITIVE.search(key))
        if len(_verdicts) < 4096:
            _verdicts[key] = verdict
    return verdict


def redact(value: Any) -> Any:
    """A copy of value with every sensitive key's value replaced, and every string
    scrubbed, at any depth."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, int | float | bool | None):
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED if _is_sensitive(key) else redact(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    return value


def _message(record: logging.LogRecord) -> str:
    """The formatted message, its arguments redacted first (a mapping's sensitive keys, too)
    and the result scrubbed."""
    message = str(record.msg)
    args = record.args
    if args:
        if isinstance(args, Mapping):
            message %= redact(args)
        else:
            message %= tuple(redact(arg) if isinstance(arg, Mapping) else arg for arg in args)
    return scrub(message)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


ACCESS_FIELDS = "access_fields"


def _safe_fields(record: logging.LogRecord) -> dict[str, Any]:
    # The access record has a fixed schema built by the edge middleware (no headers, no
    # bodies), so it skips the per-key redaction walk that every other record gets.
    access = record.__dict__.get(ACCESS_FIELDS)
    if access is not None:
        return dict(access)
    return dict(redact(_fields(record)))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _message(record),
        }
        entry.update(_safe_fields(record))
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, separators=(",", ":"))


class ConsoleFormatter(logging.Formatter):
    """Human-readable output for ENV=development; same redaction."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _safe_fields(record)
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{_iso(record.created)[11:23]} {record.levelname:<7} {_message(record)}"
        line = f"{line}  {extra}" if extra else line
        if record.exc_info:
            line += "\n" + scrub(self.formatException(record.exc_info))
        return line


_second: list[Any] = [-1, ""]


def _iso(created: float) -> str:
    whole = int(created)
    if whole != _second[0]:  # strftime once per second, not once per record
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{int(created * 1000) % 1000:03d}Z"


class AccessLog:
    """The one-per-request access record.

    When logging is configured for JSON on a stream, the record is serialised straight onto
    that stream: building a LogRecord and dispatching it through handlers costs about a fifth
    of the whole request on the liveness path (docs/BENCHMARKS.md). The stream is flushed at
    most every FLUSH_INTERVAL_S, not once per line (as nginx's `access_log ... flush=`); a
    normal exit flushes the rest, a SIGKILL can lose that last fraction of a second. Otherwise
    (development output, tests that attach handlers) it goes through `logging` like any
    other record.
    """

    FLUSH_INTERVAL_S = 0.2

    def __init__(self) -> None:
        self._logger = logging.getLogger("service.access")
        self._flush_pending = False

    def write(self, fields: dict[str, Any]) -> None:
        stream = _direct_stream
        if stream is None:
            self._logger.info("request", extra={ACCESS_FIELDS: fields})
            return
        if self._logger.disabled or not self._logger.isEnabledFor(logging.INFO):
            return
        head = f'{{"time":"{_iso(time.time())}","level":"info","logger":"service.access",'
        body = json.dumps(fields, default=str, separators=(",", ":"))
        stream.write(f'{head}"message":"request",{body[1:]}\n')
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            stream.flush()
            return
        self._flush_pending = True
        loop.call_later(self.FLUSH_INTERVAL_S, self._flush, stream)

    def _flush(self, stream: TextIO) -> None:
        self._flush_pending = False
        stream.flush()


_direct_stream: TextIO | None = None


def configure_logging(level: str = "INFO", human: bool = False) -> None:
    # The logging HOWTO's "Optimization" switches: no caller lookup, thread or process
    # names per record. One access record per request makes these measurable.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _direct_stream
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(ConsoleFormatter() if human else JsonFormatter())
    _direct_stream = None if human else sys.stdout
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # The service writes its own access log with request ids; uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("service.access").disabled = False
