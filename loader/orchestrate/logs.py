"""Structured run logs: JSON lines under $ELT_HOME/logs, readable lines on the terminal, and
every warning or error logged through stdlib logging during the run (setup_logging)."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from loader import credentials

REDACTED = "***"

# What a task's count is (the number its function returns, `rows` in the JSON lines): the
# terminal line names it. None: the count means nothing (freshness returns 0) and is left off.
TASK_UNITS: dict[str, tuple[str, str] | None] = {
    "source_init": ("row", "rows"),
    "simulate": ("day", "days"),
    "dbt_build": ("test", "tests"),
    "dbt_freshness": None,
    "report": ("check", "checks"),
    "alerts": ("alert sent", "alerts sent"),
}
DEFAULT_UNIT = ("row", "rows")  # the load waves (load_wave_N) and anything not listed


def count_label(task: str | None, count: int) -> str | None:
    """`190 tests`, `1 row`: the count with what it counts, or None when it means nothing."""
    unit = TASK_UNITS.get(task or "", DEFAULT_UNIT)
    if unit is None:
        return None
    return f"{count:,} {unit[0] if count == 1 else unit[1]}"


@dataclass(frozen=True)
class Event:
    """One line of the run log: what happened, to which task and tables, how it ended."""

    message: str
    task: str | None = None
    table: str | list[str] | None = None
    rows: int | None = None  # what the task's function returned (TASK_UNITS names it)
    duration_s: float | None = None
    status: str | None = None
    error: str | None = None
    level: str = "info"
    logger: str | None = None  # the stdlib logger a warning came from (setup_logging)
    extra: dict = field(default_factory=dict)  # its `extra=` fields


class RunLog:
    """One run's log: every event goes to the JSON-lines file and, readable, to the terminal.
    Known secrets are replaced before anything is written. `sink` gets each JSON line too
    (CloudWatch Logs: loader/aws/cloudwatch.py); it must not block."""

    def __init__(
        self,
        path: Path,
        run_id: str,
        secrets: list[str],
        stream: TextIO | None = None,
        sink: Callable[[str], None] | None = None,
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.run_id = run_id
        self.secrets = [s for s in secrets if s]
        self.stream = stream or sys.stderr
        self.sink = sink
        self._lock = threading.Lock()

    def redact(self, text: str) -> str:
        for secret in [*self.secrets, *credentials.passwords_seen()]:
            text = text.replace(secret, REDACTED)
        return text

    def event(self, event: Event) -> None:
        record = {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": event.level,
            "run_id": self.run_id,
            "task": event.task,
            "table": event.table,
            "rows": event.rows,
            "duration_s": round(event.duration_s, 3) if event.duration_s is not None else None,
            "status": event.status,
            "error": event.error,
            "message": event.message,
        }
        if event.logger is not None:
            record["logger"] = event.logger
            record.update({k: v for k, v in event.extra.items() if k not in record})
        line = self.redact(json.dumps(record, default=str))
        counted = count_label(event.task, event.rows) if event.rows is not None else None
        source = f"{event.level.upper()} {event.logger}: " if event.logger else ""
        details = "".join(f" {key}={value}" for key, value in event.extra.items())
        readable = self.redact(
            f"{record['timestamp'][11:19]} {event.task or '':<16} {source}{event.message}"
            + (f" ({counted})" if counted else "")
            + (f" in {event.duration_s:.1f}s" if event.duration_s is not None else "")
            + (f": {event.error}" if event.error else "")
            + details
        )
        with self._lock:
            with self.path.open("a") as handle:
                handle.write(line + "\n")
            print(readable, file=self.stream, flush=True)
            if self.sink is not None:
                self.sink(line)

    def progress(self, done: int, total: int, label: str) -> None:
        """A one-line progress bar of the run's tasks on the terminal (not in the file)."""
        width = 24
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        with self._lock:
            print(f"  [{bar}] {done}/{total} tasks  {label}", file=self.stream, flush=True)


# the attributes every LogRecord has: the others came from `extra=`
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "_in_run_log"}
# libraries whose loggers do not propagate to the root logger: their handler is added there
NON_PROPAGATING = ("dlt",)


class RunLogHandler(logging.Handler):
    """Every WARNING and above of the run into its RunLog: the JSON file, with the run id and
    the level, and the terminal."""

    def __init__(self, log: RunLog) -> None:
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        # the handler is on the root logger and on dlt's: a dlt record that propagates
        # reaches it twice
        if getattr(record, "_in_run_log", False):
            return
        record._in_run_log = True
        try:
            error = None
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                error = f"{type(exc).__name__}: {exc}"
            extra = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
            self.log.event(Event(record.getMessage(), level=record.levelname.lower(),
                                 error=error, logger=record.name, extra=extra))
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


def setup_logging(log: RunLog) -> RunLogHandler:
    """Send every warning and error logged during the run (the loader's modules, dlt, dbt's
    and the other libraries' loggers) to `log`, once: the run calls it when it starts, and
    stop_logging when it ends. A handler of an earlier run is replaced."""
    stop_logging()
    handler = RunLogHandler(log)
    for name in ("", *NON_PROPAGATING):
        logging.getLogger(name).addHandler(handler)
    return handler


def stop_logging() -> None:
    """Remove the run's handler (setup_logging) from every logger it was added to."""
    for name in ("", *NON_PROPAGATING):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, RunLogHandler)]:
            logger.removeHandler(handler)
