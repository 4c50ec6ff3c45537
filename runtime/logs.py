"""How both daemons log: the ``log_format`` setting, the two formats, and the fields
a log call passes as their own keys.

``text`` (the default) is one line ``TIME LEVEL LOGGER: MESSAGE`` as always. ``json``
is one JSON object per line: ``time`` (RFC 3339, UTC, milliseconds), ``level``,
``logger``, ``message``, then the fields the call gave through :func:`log_fields` or
:func:`log_summary`, the process's own fields (the agent's ``hostname``), and ``exc``
(the traceback text) when there is one. Field names are those of :func:`log_fields`'s
parameters and nowhere else. The output is ASCII: anything else is escaped, so an
untrusted string can never break a line or forge a key.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal

import pydantic

from runtime.settings import setting
from schemas.messages import ExecResult

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The ``text`` format: the one nexec has always written."""

FIELDS_ATTRIBUTE = "nexec_fields"
"""The log record attribute that carries a call's fields (set through ``extra``)."""


class LogSettings(pydantic.BaseModel):
    """The logging settings both daemons share (``--log-level`` stays a plain flag)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    log_format: LogFormat = setting(
        "text",
        help="`text` (one line `TIME LEVEL LOGGER: MESSAGE`) or `json` (one object per line)",
        details='Keys and an example in "Logs"',
        metavar="text|json",
    )

    def log_context(self) -> dict[str, str]:
        """Fields every JSON log line of the process carries (none by default)."""
        return {}


def log_fields(
    *,
    job_id: str | None = None,
    hostname: str | None = None,
    key_name: str | None = None,
    status: str | None = None,
    duration_ms: int | None = None,
) -> dict[str, Any]:
    """The ``extra=`` of a log call about a job, a host or a key: each given field
    becomes its own key in the ``json`` format (the ``text`` format ignores them).
    Never pass a secret: an API key is named by its ``key_name`` only."""
    given = {
        "job_id": job_id,
        "hostname": hostname,
        "key_name": key_name,
        "status": status,
        "duration_ms": duration_ms,
    }
    return {FIELDS_ATTRIBUTE: {name: value for name, value in given.items() if value is not None}}


def log_result(logger: logging.Logger, result: ExecResult) -> None:
    """One DEBUG line for a host's result of a job (the agent's as it sends it, the
    controller's as it collects it), with its fields; nothing is built below DEBUG."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "job %r on %r: %s in %d ms",
            result.job_id,
            result.hostname,
            result.status,
            result.duration_ms,
            extra=log_fields(
                job_id=result.job_id,
                hostname=result.hostname,
                status=result.status,
                duration_ms=result.duration_ms,
            ),
        )


def summary_text(counts: Mapping[str, int | str]) -> str:
    """``name=value`` pairs separated by spaces, in order (the text of a summary)."""
    return " ".join(f"{name}={value}" for name, value in counts.items())


def log_summary(logger: logging.Logger, what: str, counts: Mapping[str, int | str]) -> None:
    """Log a shutdown summary at INFO: ``WHAT: name=value ...`` in text; in JSON the
    same message with each count as its own key."""
    logger.info("%s: %s", what, summary_text(counts), extra={FIELDS_ATTRIBUTE: dict(counts)})


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module's docstring)."""

    def __init__(self, context: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._context = dict(context or {})

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON; a field never replaces a base key."""
        line: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields: Mapping[str, Any] = getattr(record, FIELDS_ATTRIBUTE, None) or {}
        for name, value in (*fields.items(), *self._context.items()):
            line.setdefault(name, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """RFC 3339 in UTC with milliseconds: ``2026-12-03T13:30:00.123Z``."""
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


def configure_logging(level: str, log_format: LogFormat, context: Mapping[str, str]) -> None:
    """Log to stderr at ``level`` in ``log_format``; ``context``: the fields every JSON
    line carries. Replaces any handler the root logger had. In ``json``, warnings and
    uncaught exceptions are logged too (as JSON lines).

    Raises:
        ValueError: ``level`` is not a logging level name.
    """
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(context))
        # So that nothing else writes a line that is not JSON: warnings and an
        # exception nobody caught go through the log too.
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _log_uncaught(
    kind: type[BaseException], exc: BaseException, traceback: TracebackType | None
) -> None:
    logging.getLogger("nexec").critical("uncaught exception", exc_info=(kind, exc, traceback))
