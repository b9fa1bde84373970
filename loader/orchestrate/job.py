"""`elt run`, the main job: source, load waves in foreign-key order, dbt, freshness, publish,
summary."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

import networkx as nx

from loader import warehouse
from loader.config import Settings
from loader.db import connect_raw
from loader.errors import ExitCode
from loader.extract.cut import SnapshotHolder
from loader.extract.pipeline import LoadResult, run_load
from loader.extract.settle import settle
from loader.extract.tables import LoaderConfig, load_config
from loader.orchestrate import history
from loader.orchestrate.dbt import (
    DBT_VARS,
    build_vars,
    dbt_project_hash,
    ensure_elementary_models,
    run_dbt,
    source_freshness,
    target_path,
    test_results,
)
from loader.orchestrate.graph import foreign_keys, load_waves, table_graph
from loader.orchestrate.logs import RunLog
from loader.orchestrate.notify import RunAlert, send_run_alert
from loader.orchestrate.publish import (
    Publication,
    build_invocation,
    ensure_published,
    last_publication,
)
from loader.orchestrate.runner import (
    FAILED,
    SKIPPED,
    SUCCESS,
    Task,
    TaskOutcome,
    run_dag,
    task_graph,
)
from loader.orchestrate.summary import print_summary, summarise
from loader.source import simulator


@dataclass
class RunState:
    """What the tasks of one run produce, for the summary."""

    loads: list[LoadResult] = field(default_factory=list)
    tests: dict[str, int] = field(default_factory=dict)
    freshness_ok: bool | None = None
    report: object | None = None  # loader.quality.QualityReport
    alerts: object | None = None  # loader.quality.AlertOutcome
    dbt_project_hash: str = ""
    dbt_skipped: bool = False
    dbt_built_at: str | None = None  # when the marts were last really built
    full_tests: bool = False  # test every row even when a previous build stands
    tests_since: str | None = None  # the build tested only what changed since then
    run_id: str = ""
    cut: SnapshotHolder | None = None  # the source snapshot every load wave exports from
    deep_reconcile: bool = False  # compare every table by checksums after its load
    interrupted_run: str | None = None  # a run whose dbt build was killed before its end
    failed_build_run: str | None = None  # a run whose dbt build failed since the last success
    build_invocation: str | None = None  # the dbt invocation id of this run's build
    publication: Publication | None = None  # what reporters read after this run
    progress: Callable[[str], None] | None = None  # where the dbt build's progress goes


def source_tasks(settings: Settings, simulate_days: int, scale: float) -> list[Task]:
    tasks = []
    if not simulator.is_initialised(settings.source):
        tasks.append(
            Task(
                "source_init",
                lambda: sum(
                    simulator.init(settings.source, simulator.SimConfig(scale=scale)).values()
                ),
                inputs={"scale": scale},
                retries=1,
            )
        )
    if simulate_days:
        tasks.append(
            Task(
                "simulate",
                lambda: len(simulator.advance(settings.source, simulate_days)),
                deps=("source_init",),
                inputs={"days": simulate_days},
                retries=0,  # each day commits on its own: a retry would simulate extra days
            )
        )
    return tasks


def source_foreign_keys(settings: Settings, config: LoaderConfig) -> list[tuple[str, str]]:
    conn = connect_raw(settings.source)
    try:
        return foreign_keys(conn, config.source_schema)
    finally:
        conn.close()


def waves_for(settings: Settings, config: LoaderConfig) -> list[list[str]]:
    fks = source_foreign_keys(settings, config)
    return load_waves(table_graph(list(config.tables), fks))


def pipeline_tasks(
    settings: Settings, config: LoaderConfig, waves: list[list[str]], state: RunState
) -> list[Task]:
    tasks: list[Task] = []

    def load(tables: list[str], last: bool) -> Callable[[], int]:
        def fn() -> int:
            # every wave exports from one source snapshot, taken by the first wave that runs
            # and held through the last (or the run's end: run_job closes it), so raw is the
            # source at one instant; it is not held through dbt, which would keep the
            # source's vacuum from cleaning up behind it
            if state.cut is None:
                state.cut = SnapshotHolder(settings.source)
            result = run_load(settings, config, tables=tables, holder=state.cut)
            state.loads.append(result)
            if last:
                state.cut.close()
                state.cut = None
            # raw = source, or the task fails naming the tables: dbt never builds on it
            settle(settings, config, result, deep=state.deep_reconcile)
            return result.rows_extracted

        return fn

    previous: tuple[str, ...] = ()
    load_names = []
    for n, wave in enumerate(waves, start=1):
        name = f"load_wave_{n}"
        tasks.append(Task(name, load(wave, last=n == len(waves)), deps=previous, tables=wave,
                          inputs={"tables": wave}))
        previous = (name,)
        load_names.append(name)

    def dbt_build() -> int:
        previous = history.last_successful_summary(settings.warehouse) or {}
        built_at = previous.get("dbt_built_at")
        unchanged = (
            built_at is not None
            and previous.get("dbt_project_hash") == state.dbt_project_hash
            and not history.raw_changed_since(settings.warehouse, built_at)
        )
        if unchanged:
            # nothing reached raw since the last build of the same project: marts are current
            state.dbt_skipped = True
            state.dbt_built_at = built_at
            state.tests = previous.get("tests", {})
            return 0
        state.dbt_built_at = datetime.now(UTC).isoformat()
        # a build that was killed half-way left some models newer than others: this build
        # completes them, and its tests check every row rather than what changed since
        state.interrupted_run = history.interrupted_build(settings.warehouse)
        # a build that failed wrote marts into the build copy that its tests may never have
        # read (dbt killed between a model and its tests): this build, whose copy that is,
        # tests every row before it publishes
        state.failed_build_run = history.failed_build(settings.warehouse)
        history.note_build_started(settings.warehouse, state.run_id)
        # after a successful build of the same project, the row-by-row tests check only the
        # rows written since it (macros/tests/get_where_subquery.sql); a first build, a
        # changed project or --full-tests check every row
        same_project = previous.get("dbt_project_hash") == state.dbt_project_hash
        if (built_at and same_project and not state.full_tests and not state.interrupted_run
                and not state.failed_build_run):
            state.tests_since = built_at
        try:
            ensure_elementary_models(settings)
            run_dbt(settings, "build", "--vars", build_vars(DBT_VARS, state.tests_since),
                    progress=state.progress)
            state.build_invocation = build_invocation()
        finally:
            state.tests = test_results()
        return sum(state.tests.values())

    def publish() -> int:
        # write-audit-publish: a failed or killed build never gets here, so reporters keep
        # the marts of the last good build (loader/orchestrate/publish.py)
        if state.dbt_skipped:
            state.publication = last_publication(settings.warehouse, settings.env)
            return 0  # nothing was built: the published marts are current
        # (under --retry-failed no build ran here: the last one is the build in target/)
        built_by = state.build_invocation or build_invocation()
        state.publication = ensure_published(
            settings, built_by, strict=bool(state.build_invocation)
        )
        return len(state.publication.marts)

    def freshness() -> int:
        # it reads raw alone, so it runs beside the build
        statuses = source_freshness(settings, target_path() / "freshness")
        # warn is fresh enough (dbt exits 0 on it); error and runtime error are not
        state.freshness_ok = all(s in ("pass", "warn") for s in statuses.values())
        return 0

    def report() -> int:
        from loader.quality import build_report

        state.report = build_report(settings)
        return len(state.report.checks)

    def alerts() -> int:
        from loader.quality import send_alerts

        state.alerts = send_alerts(settings, state.report)
        return len(state.alerts.alerted)

    tasks.append(Task("dbt_build", dbt_build, deps=tuple(load_names), retries=1))
    tasks.append(Task("dbt_freshness", freshness, deps=tuple(load_names), retries=1))
    tasks.append(Task("publish", publish, deps=("dbt_build",), retries=1))
    tasks.append(Task("report", report, deps=("publish",), retries=1))
    tasks.append(Task("alerts", alerts, deps=("report",), retries=0))
    return tasks


def select_for_retry(tasks: list[Task], failed: set[str]) -> list[Task]:
    """The failed tasks and everything downstream of them."""
    graph = task_graph(tasks)
    keep = set()
    for name in failed & set(graph.nodes):
        keep |= {name} | nx.descendants(graph, name)
    if not keep:
        return tasks
    return [
        Task(t.name, t.fn, tuple(d for d in t.deps if d in keep), t.tables, t.inputs, t.retries)
        for t in tasks
        if t.name in keep
    ]


def run_job(
    settings: Settings,
    *,
    simulate_days: int = 0,
    scale: float = 0.1,
    retry_failed: bool = False,
    full_tests: bool = False,
    echo: Callable[[str], None] = print,
    stream: TextIO | None = None,
    base_delay: float = 1.0,
    lock: history.RunLock | None = None,
    deep_every: int | None = None,
) -> int:
    """The whole job, once, under the run lock (taken here unless the caller holds it).
    Every `deep_every` runs (default: settings.deep_reconcile_every; 0: never) the loads
    compare every table with the source by checksums and repair what differs.
    Returns the process exit code."""
    t0 = time.monotonic()
    if lock is None:
        warehouse.ensure_running(settings)
        history.ensure_schema(settings.warehouse)
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
    args = {"simulate_days": simulate_days, "scale": scale, "retry_failed": retry_failed,
            "full_tests": full_tests}
    state = RunState(dbt_project_hash=dbt_project_hash(settings.env), full_tests=full_tests,
                     run_id=run_id)
    state.progress = lambda message: log.event(message, task="dbt_build", status="running")
    every = settings.deep_reconcile_every if deep_every is None else deep_every
    outcomes: dict[str, TaskOutcome] = {}
    error = None
    previous_status = None
    try:
        state.deep_reconcile = every > 0 and history.runs_since_deep_check(
            settings.warehouse
        ) >= every
        history.start_run(settings.warehouse, run_id, args)  # marks dead runs crashed
        previous_status = history.last_finished_status(settings.warehouse)
        log.event("run started", status="running")

        def on_attempt(task, attempt, status, started, finished, rows, err):
            history.record_task(
                settings.warehouse,
                run_id,
                task.name,
                task.tables,
                attempt,
                status,
                started,
                finished,
                rows,
                err,
            )
            if status == FAILED:
                history.record_failed_task(
                    settings.warehouse, run_id, task.name, task.inputs, err or ""
                )
            log.event(
                f"{status}" + (f" (attempt {attempt})" if attempt > 1 else ""),
                task=task.name,
                table=task.tables,
                rows=rows,
                status=status,
                duration_s=(finished - started).total_seconds(),
                error=err,
                level="error" if status == FAILED else "info",
            )

        failures = history.unresolved_failures(settings.warehouse) if retry_failed else []
        if retry_failed and not failures:
            echo("no failed tasks to retry")
        dag_args = {"on_attempt": on_attempt, "on_progress": log.progress, "base_delay": base_delay}
        if not retry_failed or failures:
            outcomes.update(run_dag(source_tasks(settings, simulate_days, scale), **dag_args))
            if all(o.status == SUCCESS for o in outcomes.values()):
                config = load_config(settings.tables_config)
                tasks = pipeline_tasks(settings, config, waves_for(settings, config), state)
                if failures:
                    tasks = select_for_retry(tasks, {name for _, name, _ in failures})
                outcomes.update(run_dag(tasks, **dag_args))
        failed = [o for o in outcomes.values() if o.status == FAILED]
        status = "failed" if failed else "success"
        if failed:
            error = "; ".join(f"{o.task.name}: {o.error}" for o in failed)
        elif failures:
            history.resolve_failures(settings.warehouse, [i for i, _, _ in failures], run_id)
    except BaseException as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if state.cut is not None:
            state.cut.close()
        summary = summarise(state, outcomes, time.monotonic() - t0)
        try:
            log.event(
                "run finished",
                status=status,
                duration_s=time.monotonic() - t0,
                error=error,
                level="error" if status == "failed" else "info",
            )
            # when the warehouse is gone this raises DatabaseUnavailable (exit 3), and the
            # next `elt` command that reads the history marks the run crashed
            history.finish_run(settings.warehouse, run_id, status, error, summary)
        finally:
            lock.release()
            _alert_run(settings, run_id, status, error, outcomes, previous_status, log)
            if settings.aws.log_group:
                from loader.aws.cloudwatch import finish_run

                finish_run(settings, status, summary, shipper)
    print_summary(run_id, status, summary, settings, echo)
    return exit_code(outcomes)


def _alert_run(
    settings: Settings,
    run_id: str,
    status: str,
    error: str | None,
    outcomes: dict[str, TaskOutcome],
    previous_status: str | None,
    log: RunLog,
) -> None:
    """Every failed run alerts, whatever failed; the first good run after a failed (or
    crashed) one says the pipeline recovered. Never raises."""
    recovered = status == "success" and previous_status in ("failed", "crashed")
    if status != "failed" and not recovered:
        return
    failed = {o.task.name: o.error or "" for o in outcomes.values() if o.status == FAILED}
    if status == "failed" and not failed:
        failed = {"run": error or "the run ended with an error"}
    alert = RunAlert(
        run_id,
        "failed" if status == "failed" else "recovered",
        failed,
        [name for name, o in outcomes.items() if o.status == SKIPPED],
        settings.quality.report_url or str(settings.quality.reports_dir / "elementary.html"),
    )
    try:
        sent = send_run_alert(settings, alert)
    except Exception as exc:  # noqa: BLE001 - alerting never changes the run's outcome
        sent = {"all": f"failed: {exc}"}
    if sent:
        log.event(f"run alert ({alert.status}): "
                  + "; ".join(f"{channel} {state}" for channel, state in sent.items()),
                  status=alert.status, level="info" if "failed" not in str(sent) else "error")


def exit_code(outcomes: dict[str, TaskOutcome]) -> ExitCode:
    """0 when every task succeeded; 3 when a task failed because a database stayed
    unreachable; 1 for any other failure."""
    failed = [o for o in outcomes.values() if o.status == FAILED]
    if not failed:
        return ExitCode.SUCCESS
    return ExitCode.UNAVAILABLE if any(o.unavailable for o in failed) else ExitCode.FAILED
