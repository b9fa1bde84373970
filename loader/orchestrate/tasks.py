"""The tasks of `elt run`: the source, the load waves in foreign-key order, dbt, freshness,
publish, report and alerts, and what they produce (RunState)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import networkx as nx

from loader.config import Settings
from loader.db import connect_raw
from loader.extract.cut import SnapshotHolder
from loader.extract.pipeline import run_load
from loader.extract.plan import LoadRequest
from loader.extract.results import LoadResult
from loader.extract.settle import settle
from loader.extract.tables import LoaderConfig
from loader.orchestrate import history
from loader.orchestrate.dbt import (
    BUILD_VARS,
    ensure_elementary_models,
    run_dbt,
    source_freshness,
    target_path,
    test_results,
)
from loader.orchestrate.graph import foreign_keys, load_waves, table_graph
from loader.orchestrate.publish import (
    Publication,
    build_invocation,
    ensure_published,
    last_publication,
)
from loader.orchestrate.runner import Task, task_graph
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
            result = run_load(settings, config, LoadRequest(tables), holder=state.cut)
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
        # after a successful build of the same project, the row-by-row tests check only the
        # rows written since it (macros/tests/get_where_subquery.sql reads the scope recorded
        # here); a first build, a changed project or --full-tests check every row
        same_project = previous.get("dbt_project_hash") == state.dbt_project_hash
        if (built_at and same_project and not state.full_tests and not state.interrupted_run
                and not state.failed_build_run):
            state.tests_since = built_at
        history.note_build_started(settings.warehouse, state.run_id, state.tests_since)
        try:
            ensure_elementary_models(settings)
            # elementary's models are built by ensure_elementary_models, not every build
            run_dbt(settings, "build", "--exclude", "package:elementary", "--vars", BUILD_VARS,
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

        # elementary.html too unless ELT_HTML_REPORT=false (then `elt report` renders it)
        state.report = build_report(settings, html=settings.quality.html_report)
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
