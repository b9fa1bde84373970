"""The AWS Lambda entry point: one `elt load` (tables from the event) or one `elt run`,
in a child process that is stopped before the function's time runs out; returns a JSON
summary. Handler: loader.aws.lambda_handler.handler.

Event: {"command": "load", "tables": ["orders", ...]} (no tables: all) or
{"command": "run"}. Lambda's file system is read-only but /tmp: ELT_HOME, dbt's target and
logs and the reports go there unless the function's environment says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from loader.config import PROJECT_ROOT

COMMANDS = ("load", "run")
# kept back from the function's remaining time: stopping the child, the summary, the return
MARGIN_MS = 10_000
STOP_GRACE_S = 3.0  # between SIGTERM and SIGKILL
TAIL_LINES = 40


def lambda_environment(base: dict[str, str]) -> dict[str, str]:
    """The child's environment: writable places under /tmp, the zip's `dbt` launcher."""
    home = base.get("ELT_HOME") or "/tmp/elt"
    return {
        **base,
        "ELT_HOME": home,
        "DBT_TARGET_PATH": base.get("DBT_TARGET_PATH") or f"{home}/target",
        "DBT_LOG_PATH": base.get("DBT_LOG_PATH") or f"{home}/logs",
        "ELT_REPORTS_DIR": base.get("ELT_REPORTS_DIR") or f"{home}/reports",
        "PATH": f"{PROJECT_ROOT / 'bin'}:{base.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), base.get("PYTHONPATH"))
                                      if p),
    }


def command_line(event: dict[str, Any]) -> list[str]:
    command = event.get("command", "load")
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}: use one of {', '.join(COMMANDS)}")
    tables = event.get("tables") or []
    if command == "run" or not isinstance(tables, list):
        return [command]
    return ["load", *[str(t) for t in tables]]


def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    event = event or {}
    t0 = time.monotonic()
    try:
        args = command_line(event)
    except ValueError as exc:
        return {"status": "rejected", "error": str(exc)}
    remaining_ms = context.get_remaining_time_in_millis() if context else 900_000
    budget_s = (remaining_ms - MARGIN_MS) / 1000
    summary: dict[str, Any] = {"command": args[0], "tables": args[1:],
                               "code": str(PROJECT_ROOT)}
    if budget_s <= 0:
        return {**summary, "status": "skipped",
                "error": f"{remaining_ms} ms left: not enough to start (margin {MARGIN_MS} ms)"}
    child = subprocess.Popen(
        [sys.executable, "-m", "loader.cli", *args], cwd=PROJECT_ROOT,
        env=lambda_environment(dict(os.environ)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    timed_out = False
    try:
        out, err = child.communicate(timeout=budget_s)
    except subprocess.TimeoutExpired:
        # the load and the run are idempotent: the next invocation finishes the work
        timed_out = True
        child.terminate()
        try:
            out, err = child.communicate(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
    status = "timeout" if timed_out else ("success" if child.returncode == 0 else "failed")
    return {
        **summary,
        "status": status,
        "exit_code": child.returncode,
        "seconds": round(time.monotonic() - t0, 2),
        "output": out.splitlines()[-TAIL_LINES:],
        "errors": [line for line in err.splitlines() if line.startswith("elt:")][-10:],
    }
