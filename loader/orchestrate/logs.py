"""Structured run logs: JSON lines under $ELT_HOME/logs, readable lines on the terminal."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

REDACTED = "***"


class RunLog:
    """One run's log: every event goes to the JSON-lines file and, readable, to the terminal.
    Known secrets are replaced before anything is written."""

    def __init__(self, path: Path, run_id: str, secrets: list[str], stream: TextIO | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.run_id = run_id
        self.secrets = [s for s in secrets if s]
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
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
        readable = self.redact(
            f"{record['timestamp'][11:19]} {task or '':<16} {message}"
            + (f" ({rows:,} rows)" if rows is not None else "")
            + (f" in {duration_s:.1f}s" if duration_s is not None else "")
            + (f": {error}" if error else "")
        )
        with self._lock:
            with self.path.open("a") as handle:
                handle.write(line + "\n")
            print(readable, file=self.stream, flush=True)

    def progress(self, done: int, total: int, label: str) -> None:
        """A one-line progress bar of the run's tasks on the terminal (not in the file)."""
        width = 24
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        with self._lock:
            print(f"  [{bar}] {done}/{total} tasks  {label}", file=self.stream, flush=True)
