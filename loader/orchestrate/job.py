"""`elt run`, the main job: its tasks (tasks.py) under the run lock, every attempt recorded and
logged, the run alert and the summary."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from loader import warehouse
from loader.config import Settings
from loader.errors import ExitCode
from loader.extract.tables import load_config
from loader.orchestrate import history
from loader.orchestrate.dbt import dbt_project_hash
from loader.orchestrate.logs import Event, RunLog, setup_logging, stop_logging
from loader.orchestrate.notify import RunAlert, send_run_alert
from loader.orchestrate.runner import Attempt, RunStatus, TaskOutcome, TaskStatus, run_dag
from loader.orchestrate.summary import print_summary, summarise
from loader.orchestrate.tasks import (
    RunState,
    pipeline_tasks,
    select_for_retry,
    source_tasks,
    waves_for,
)


@dataclass(frozen=True)
class RunOptions:
    """How `elt run` runs: the days the source simulator advances first (and the scale it
    starts at), whether it only retries the failed tasks of the last run, whether the dbt
    tests read every row, the first retry delay, and every how many runs the loads compare
    every table by checksums (None: settings.deep_reconcile_every; 0: never)."""

    simulate_days: int = 0
    scale: float = 0.1
    retry_failed: bool = False
    full_tests: bool = False
    base_delay: float = 1.0
    deep_every: int | None = None


def run_job(
    settings: Settings,
    options: RunOptions | None = None,
    *,
    echo: Callable[[str], None] = print,
    stream: TextIO | None = None,
    lock: history.RunLock | None = None,
) -> int:
    """The whole job, once, under the run lock (taken here unless the caller holds it).
    Returns the process exit code."""
    options = options or RunOptions()
    t0 = time.monotonic()
    if lock is None:
        warehouse.ensure_running(settings)
        lock = history.RunLock(settings.warehouse)
        lock.acquire()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    shipper = None
    if settings.aws.log_group:  # ELT_CLOUDWATCH_LOG_GROUP: boto3 is imported only then
        from loader.aws.cloudwatch import start_shipper

        shipper = start_shipper(settings, run_id)
    log = RunLog(
        settings.logs_dir / "elt-runs.jsonl",
        run_id,
        [settings.warehouse.password, settings.source.password],
        stream or sys.stderr,
        sink=shipper.emit if shipper is not None else None,
    )
    setup_logging(log)
    args = {k: getattr(options, k) for k in ("simulate_days", "scale", "retry_failed",
                                             "full_tests")}
    state = RunState(dbt_project_hash=dbt_project_hash(settings.env),
                     full_tests=options.full_tests, run_id=run_id)
    state.progress = lambda message: log.event(Event(message, task="dbt_build",
                                                         status="running"))
    every = options.deep_every
    every = settings.deep_reconcile_every if every is None else every
    outcomes: dict[str, TaskOutcome] = {}
    error = None
    previous_status = None
    try:
        state.deep_reconcile = every > 0 and history.runs_since_deep_check(
            settings.warehouse
        ) >= every
        history.start_run(settings.warehouse, run_id, args)  # marks dead runs crashed
        previous_status = history.last_finished_status(settings.warehouse)
        log.event(Event("run started", status="running"))

        def on_attempt(at: Attempt) -> None:
            task = at.task
            history.record_task(settings.warehouse, history.TaskAttempt(
                run_id, task.name, task.tables, at.number, at.status, at.started, at.finished,
                at.rows, at.error))
            if at.status == TaskStatus.FAILED:
                history.record_failed_task(
                    settings.warehouse, run_id, task.name, task.inputs, at.error or ""
                )
            log.event(Event(
                f"{at.status}" + (f" (attempt {at.number})" if at.number > 1 else ""),
                task=task.name,
                table=task.tables,
                rows=at.rows,
                status=at.status,
                duration_s=(at.finished - at.started).total_seconds(),
                error=at.error,
                level="error" if at.status == TaskStatus.FAILED else "info",
            ))

        retry_failed = options.retry_failed
        failures = history.unresolved_failures(settings.warehouse) if retry_failed else []
        if retry_failed and not failures:
            echo("no failed tasks to retry")
        dag_args = {"on_attempt": on_attempt, "on_progress": log.progress,
                    "base_delay": options.base_delay}
        if not retry_failed or failures:
            first = source_tasks(settings, options.simulate_days, options.scale)
            outcomes.update(run_dag(first, **dag_args))
            if all(o.status == TaskStatus.SUCCESS for o in outcomes.values()):
                config = load_config(settings.tables_config)
                tasks = pipeline_tasks(settings, config, waves_for(settings, config), state)
                if failures:
                    tasks = select_for_retry(tasks, {name for _, name, _ in failures})
                outcomes.update(run_dag(tasks, **dag_args))
        failed = [o for o in outcomes.values() if o.status == TaskStatus.FAILED]
        status = RunStatus.FAILED if failed else RunStatus.SUCCESS
        if failed:
            error = "; ".join(f"{o.task.name}: {o.error}" for o in failed)
        elif failures:
            history.resolve_failures(settings.warehouse, [i for i, _, _ in failures], run_id)
    except BaseException as exc:
        status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if state.cut is not None:
            state.cut.close()
        summary = summarise(state, outcomes, time.monotonic() - t0)
        try:
            log.event(Event(
                "run finished",
                status=status,
                duration_s=time.monotonic() - t0,
                error=error,
                level="error" if status == RunStatus.FAILED else "info",
            ))
            # when the warehouse is gone this raises DatabaseUnavailable (exit 3), and the
            # next `elt` command that reads the history marks the run crashed
            history.finish_run(settings.warehouse, run_id, status, error, summary)
        finally:
            lock.release()
            _alert_run(settings, RunEnd(run_id, status, error), outcomes, previous_status, log)
            if settings.aws.log_group:
                from loader.aws.cloudwatch import finish_run

                finish_run(settings, status, summary, shipper)
            stop_logging()
    print_summary(run_id, status, summary, settings, echo)
    return exit_code(outcomes)


@dataclass(frozen=True)
class RunEnd:
    """How a run ended: its id, its status and the error that failed it."""

    run_id: str
    status: RunStatus
    error: str | None


def _alert_run(
    settings: Settings,
    ended: RunEnd,
    outcomes: dict[str, TaskOutcome],
    previous_status: str | None,
    log: RunLog,
) -> None:
    """Every failed run alerts, whatever failed; the first good run after a failed (or
    crashed) one says the pipeline recovered. Never raises."""
    failed_run = ended.status == RunStatus.FAILED
    recovered = ended.status == RunStatus.SUCCESS and previous_status in (
        RunStatus.FAILED, RunStatus.CRASHED)
    if not failed_run and not recovered:
        return
    failed = {o.task.name: o.error or "" for o in outcomes.values()
              if o.status == TaskStatus.FAILED}
    if failed_run and not failed:
        failed = {"run": ended.error or "the run ended with an error"}
    alert = RunAlert(
        ended.run_id,
        "failed" if failed_run else "recovered",
        failed,
        [name for name, o in outcomes.items() if o.status == TaskStatus.SKIPPED],
        settings.quality.report_url or str(settings.quality.reports_dir / "elementary.html"),
    )
    try:
        sent = send_run_alert(settings, alert)
    except Exception as exc:  # noqa: BLE001 - alerting never changes the run's outcome
        sent = {"all": f"failed: {exc}"}
    if sent:
        log.event(Event(f"run alert ({alert.status}): "
                        + "; ".join(f"{channel} {state}" for channel, state in sent.items()),
                        status=alert.status,
                        level="info" if "failed" not in str(sent) else "error"))


def exit_code(outcomes: dict[str, TaskOutcome]) -> ExitCode:
    """0 when every task succeeded; 3 when a task failed because a database stayed
    unreachable; 1 for any other failure."""
    failed = [o for o in outcomes.values() if o.status == TaskStatus.FAILED]
    if not failed:
        return ExitCode.SUCCESS
    return ExitCode.UNAVAILABLE if any(o.unavailable for o in failed) else ExitCode.FAILED
