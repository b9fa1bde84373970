"""Structured run logs: JSON lines under $ELT_HOME/logs, readable lines on the terminal."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
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

    def event(
        self,
        message: str,
        *,
        task: str | None = None,
        table: str | list[str] | None = None,
        rows: int | None = None,
        duration_s: float | None = None,
        status: str | None = None,
        error: str | None = None,
        level: str = "info",
    ) -> None:
        record = {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "run_id": self.run_id,
            "task": task,
            "table": table,
            "rows": rows,
            "duration_s": round(duration_s, 3) if duration_s is not None else None,
            "status": status,
            "error": error,
            "message": message,
        }
        line = self.redact(json.dumps(record, default=str))
        counted = count_label(task, rows) if rows is not None else None
        readable = self.redact(
            f"{record['timestamp'][11:19]} {task or '':<16} {message}"
            + (f" ({counted})" if counted else "")
            + (f" in {duration_s:.1f}s" if duration_s is not None else "")
            + (f": {error}" if error else "")
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
