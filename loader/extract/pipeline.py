"""The dlt pipeline `marketplace`: fast COPY extraction, merges into raw, watermarks in dlt state.

Each table is exported from the source with `COPY (select ...) TO STDOUT (FORMAT binary)` into a
file inside one REPEATABLE READ snapshot (bulk exports through psql, which joins that snapshot),
and a manifest of the file is handed to dlt as an imported file: dlt loads the file with binary
COPY (binary_copy.py; replace on an initial load, merge on increments) and commits the table's
watermark with it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import dlt
from dlt.pipeline.exceptions import PipelineStepFailed
from psycopg2 import sql

from loader import credentials, schemas
from loader.config import Settings, UserError
from loader.db import connect_raw, qualified
from loader.db import execute as db_execute
from loader.errors import first_cause
from loader.extract import reconcile
from loader.extract.binary_copy import postgres_binary_copy
from loader.extract.catalog import Column, key_is_enforced, source_columns
from loader.extract.cut import SnapshotHolder, SourceCut
from loader.extract.drift import detect_drift, stored_columns
from loader.extract.plan import Action, LoadContext, LoadRequest, TablePlan
from loader.extract.queries import SourceCount
from loader.extract.raw_index import (
    RawCounts,
    index_and_count,
    loaded_at_index_name,
    merge_key_index_name,
)
from loader.extract.resource import table_resource
from loader.extract.results import LoadError, LoadResult, TableResult
from loader.extract.tables import LoaderConfig, Mode, TableSpec

log = logging.getLogger(__name__)

PIPELINE_NAME = "marketplace"


def configure_dlt() -> None:
    """Telemetry off (slow offline, and users expect privacy) unless the user set it."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("DLT_TELEMETRY", "false")


def pipelines_dir(settings: Settings) -> Path:
    return settings.dlt_dir / "pipelines"


def make_pipeline(settings: Settings, config: LoaderConfig) -> dlt.Pipeline:
    configure_dlt()
    # a secret read anew and a whole IAM token's lifetime (15 minutes) for every load
    credentials.forget(settings.warehouse)
    return dlt.pipeline(
        PIPELINE_NAME,
        destination=postgres_binary_copy(credentials=credentials.live(settings.warehouse).dsn),
        dataset_name=config.dataset,
        pipelines_dir=str(pipelines_dir(settings)),
    )


def table_states(pipeline: dlt.Pipeline) -> dict[str, dict]:
    """Each table's resource state (watermark, last load) as dlt keeps it."""
    out: dict[str, dict] = {}
    for source in pipeline.state.get("sources", {}).values():
        for name, state in source.get("resources", {}).items():
            out[name] = dict(state)
    return out


def finish_pending(pipeline: dlt.Pipeline, progress: Callable[[str], None]) -> bool:
    """Complete packages a crashed run left behind, before extracting anything new."""
    if not pipeline.has_pending_data:
        if not pipeline.list_normalized_load_packages():
            return False
        # only packages flagged for abort: a run was killed inside abort_packages. dlt
        # finishes that abort at the next load() and then deletes every newer package, the
        # one this load is about to extract included: finish it now, before extracting
        progress("finishing the abort of a load that an earlier run left pending")
        pipeline.load()
        pipeline.sync_destination()
        return True
    progress("finishing a load that an earlier run left pending")
    # dlt logs each job that cannot run twice with its traceback (about 90 lines): the
    # outcome below is what the user needs, in one line
    dlt_log = logging.getLogger("dlt")
    level = dlt_log.level
    dlt_log.setLevel(logging.CRITICAL)
    try:
        pipeline.normalize()
        pipeline.load()
    except Exception as exc:  # noqa: BLE001 - any failure: fall back to a clean re-extract
        # a job the crash interrupted after its commit cannot run twice (dlt's state row);
        # drop the package: local state returns to the last completed load, and re-extracting
        # from there is safe because every merge is idempotent
        progress(
            f"the pending load could not be finished ({type(exc).__name__}); "
            "re-extracting from the last completed load instead"
        )
        pipeline.abort_packages()
        pipeline.sync_destination()
    finally:
        dlt_log.setLevel(level)
    return True


def _plan_action(spec: TableSpec, state: dict, request: LoadRequest) -> Action:
    if request.backfill_window:
        return Action.BACKFILL
    if request.full_refresh or spec.mode == Mode.FULL:
        return Action.FULL
    return Action.INCREMENT if state.get(spec.watermark_key) else Action.INITIAL


def _warehouse_exec(settings: Settings, statements: list[sql.Composable]) -> None:
    if statements:
        db_execute(settings.warehouse, *statements)


def run_load(
    settings: Settings,
    config: LoaderConfig,
    request: LoadRequest | None = None,
    *,
    progress: Callable[[str], None] = lambda _: None,
    holder: SnapshotHolder | None = None,
) -> LoadResult:
    """Extract what changed since each table's watermark (all tables, or `request`'s) and
    merge it into raw. Every table
    is exported from one source snapshot: `holder`'s (a caller that loads in several steps
    holds one for all of them), else one held for this load."""
    # the source counts of increments run on `counts` while dlt loads (see export_table); a failed
    # load leaves the `with` only when they have finished, so their connections close
    with ExitStack() as stack:
        if holder is None:
            holder = stack.enter_context(SnapshotHolder(settings.source))
        counts = stack.enter_context(ThreadPoolExecutor(3, thread_name_prefix="source-count"))
        return _run_load(settings, config, holder.cut(counts), request or LoadRequest(), progress)


def _source_count(result: TableResult) -> SourceCount | None:
    try:
        return result.pending_source_rows.result()
    except Exception as exc:  # noqa: BLE001 - the load itself has committed: report, go on
        log.warning("%s: the source count failed: %s", result.table, exc)
        return None  # recorded as unknown; `elt reconcile` counts again


def _run_load(
    settings: Settings,
    config: LoaderConfig,
    cut: SourceCut,
    request: LoadRequest,
    progress: Callable[[str], None],
) -> LoadResult:
    t0 = time.monotonic()
    full_refresh = request.full_refresh
    specs = config.select(request.tables)
    pipeline = make_pipeline(settings, config)
    finish_pending(pipeline, progress)
    export_dir = settings.dlt_dir / "exports"
    # leftovers of a crash: finish_pending has loaded or dropped every package naming them
    shutil.rmtree(export_dir, ignore_errors=True)
    export_dir.mkdir(parents=True, exist_ok=True)
    # the warehouse is the truth: a dropped dataset or an older local copy must not decide
    pipeline.sync_destination()
    states = table_states(pipeline)
    load = LoadContext(settings, config, cut, export_dir, datetime.now(UTC), progress)

    src = connect_raw(settings.source)
    try:
        catalog = {s.name: source_columns(src, config.source_schema, s.name) for s in specs}
        for spec in specs:
            spec.check_against(config.source_schema, {c.name for c in catalog[spec.name]})
        specs = [
            replace(
                s,
                key_enforced=key_is_enforced(src, config.source_schema, s.name, s.primary_key),
            )
            for s in specs
        ]
    finally:
        src.close()

    results: dict[str, TableResult] = {}
    resources = []
    drop_indexes = []
    existing = reconcile.raw_tables(settings, config.dataset)
    schemas.ensure_on(settings.warehouse, "ops")  # the extract threads write tombstones there
    raw_counts = RawCounts(settings, config, results, load.loaded_at)
    counted = reconcile.counted_loads(settings, {
        s.name: states[s.name]["last_load_id"] for s in specs
        if s.mode == Mode.TIMESTAMP and states.get(s.name, {}).get("last_load_id")
    })
    for spec in specs:
        state = states.get(spec.name, {})
        if spec.name not in existing:
            state = {}  # raw was dropped or never loaded: start over
        action = _plan_action(spec, state, request)
        stored = stored_columns(pipeline, spec.name)
        notes, errors = detect_drift(stored, catalog[spec.name])
        if action == Action.INCREMENT and not errors and any(
            c.name not in stored for c in catalog[spec.name]
        ):
            # rows already in raw would hold null in the new column while the source's rows
            # hold its default or backfilled values: the table is reloaded whole, once
            action = Action.FULL
            notes.append("raw's existing rows are reloaded so that the new column holds "
                         "the source's values")
        if stored and not full_refresh:
            # dlt adds a new column to the existing table (a full refresh drops it first):
            # NOT NULL would fail on the rows already there
            catalog[spec.name] = [
                c if c.name in stored else replace(c, nullable=True) for c in catalog[spec.name]
            ]
        result = TableResult(spec.name, spec.mode, action)
        result.drift = notes + errors
        for note in result.drift:
            progress(f"{spec.name}: schema drift: {note}")
        results[spec.name] = result
        if errors and action != Action.FULL:
            result.action = Action.SKIPPED
            continue
        # a full refresh: dlt drops the table (with the views on it, see
        # BinaryCopyPostgresClient.drop_tables) and recreates it without indexes from the
        # current source columns (refresh below), once the extraction has succeeded
        if action.whole_table and not full_refresh:
            # bulk COPY into an unindexed table, then one index build, beats per-row upkeep
            drop_indexes.extend(
                sql.SQL("drop index if exists {}").format(qualified(config.dataset, name))
                for name in (merge_key_index_name(spec.name), loaded_at_index_name(spec.name))
            )
        resources.append(
            table_resource(
                load,
                TablePlan(spec, catalog[spec.name], action, request.backfill_window,
                          last_count_done=spec.name in counted),
                result,
            )
        )
    _warehouse_exec(settings, drop_indexes)
    load_id = None
    # dlt's load threads tell raw_counts as each table commits (binary_copy.LoadHooks)
    pipeline.destination.load_hooks = raw_counts
    try:
        if resources:
            # a full refresh drops and recreates the tables (and their state) from the
            # current source columns, so it also cures a type change in the source
            try:
                info = pipeline.run(
                    resources, refresh="drop_resources" if full_refresh else None
                )
            except PipelineStepFailed as exc:
                # the loader's own message, if it has one; else dlt's error as it is (raising
                # `exc from exc` would make it its own cause: a cycle for whoever walks causes)
                user = first_cause(exc, UserError)
                if user is None:
                    raise
                raise user from exc
            load_id = info.loads_ids[-1] if info.loads_ids else None
        for spec in specs:
            if results[spec.name].action != Action.SKIPPED:
                results[spec.name].raw_rows = raw_counts.start(spec.name).result()
    finally:
        pipeline.destination.load_hooks = None
        raw_counts.pool.shutdown(wait=True)
    missed: dict[str, SourceCount] = {}
    uncounted = []
    for result in results.values():
        if result.pending_source_rows is not None:
            count = _source_count(result)
            result.source_rows = count.rows if count else None
            if count is None:
                uncounted.append(result.table)
            elif count.missed:
                missed[result.table] = count
    if missed:
        _catch_up(load, pipeline, catalog, results, missed)
    shutil.rmtree(export_dir, ignore_errors=True)
    reconcile.record_counts(settings, config, load_id, list(results.values()))
    if settings.aws.s3_url and load_id:
        land_load(settings, config, load_id, load.loaded_at, results, progress)
    skipped = [r for r in results.values() if r.action == Action.SKIPPED]
    if skipped:
        raise LoadError(
            "schema drift stopped the load of "
            + "; ".join(f"{r.table}: {' '.join(r.drift)}" for r in skipped)
        )
    if uncounted:
        searched = [t for t in uncounted if config.tables[t].mode == Mode.TIMESTAMP]
        raise LoadError(
            f"the source count of {', '.join(uncounted)} failed (the warning above says why): "
            "raw could not be compared with the source"
            + (f", nor searched for rows written behind the window ({', '.join(searched)})"
               if searched else "")
            + ". The rows this load extracted are committed; run the load again: the next "
            "one counts again" + (" and searches from the last load whose count completed"
                                  if searched else "")
        )
    return LoadResult(load_id, results, time.monotonic() - t0)


def land_load(
    settings: Settings,
    config: LoaderConfig,
    load_id: str,
    loaded_at: datetime,
    results: dict[str, TableResult],
    progress: Callable[[str], None],
) -> None:
    """ELT_S3_URL: the rows this load wrote (its `_loaded_at` stamp, catch-up included) go to
    the S3 landing zone as Parquet (loader/aws/landing.py; boto3 is imported only here)."""
    from loader.aws.landing import LandedTable, land

    landed = [
        LandedTable(r.table, load_id, r.action, loaded_at)
        for r in results.values()
        if r.action in (Action.INITIAL, Action.FULL, Action.REPAIR)  # a repair may only delete
        or (r.action != Action.SKIPPED and (r.rows_extracted or r.caught_up))
    ]
    if not landed:
        return
    try:
        rows = land(settings, config, landed)
    except Exception as exc:
        raise LoadError(
            f"load {load_id} is committed to raw, but landing it in {settings.aws.s3_url} "
            f"failed: {exc}. The landing zone lacks this load (a replay from S3 would miss "
            "it): fix the access to S3, then `elt load --full-refresh "
            f"{' '.join(t.table for t in landed)}` lands those tables whole again"
        ) from exc
    if rows:
        progress(f"landed {sum(rows.values()):,} row(s) of {len(rows)} table(s) in "
                 f"{settings.aws.s3_url} (load_id={load_id})")


def _catch_up(
    load: LoadContext,
    pipeline: dlt.Pipeline,
    catalog: dict[str, list[Column]],
    results: dict[str, TableResult],
    missed: dict[str, SourceCount],
) -> None:
    """Load, in this load and from its snapshot, the rows its count scans found behind the
    increments' windows (SourceCount.missed, by ctid), then count raw again. Each table
    learns how far its clocks ran behind, so that later windows include such rows."""
    config = load.config
    # the rows caught up carry a stamp of their own, after the increment's
    load = replace(load, loaded_at=datetime.now(UTC))
    resources = []
    for table, count in missed.items():
        if results[table].rechecking:
            # found by a search that reached back past the previous load (its own never
            # completed): rows that load brought count too, and say nothing about clocks
            load.progress(
                f"{table}: {len(count.missed)} row(s) written since the last load whose "
                f"search completed have {config.tables[table].cursor} behind the window: "
                "loading them again (an earlier load stopped before its search ended)"
            )
        else:
            load.progress(
                f"{table}: {len(count.missed)} row(s) were written since the last load with "
                f"{config.tables[table].cursor} up to {count.skew_s or 0:.0f}s behind the "
                "window (clocks that ran behind, or long transactions): loading them now"
            )
        caught = TableResult(table, config.tables[table].mode, Action.CATCH_UP)
        caught.skew_s = None if results[table].rechecking else count.skew_s
        plan = TablePlan(config.tables[table], catalog[table], Action.CATCH_UP, count.missed)
        resources.append(table_resource(load, plan, caught))
        results[table].caught_up = len(count.missed)
    try:
        pipeline.run(resources)
    except PipelineStepFailed as exc:
        raise LoadError(
            f"rows found behind the window of {', '.join(missed)} could not be loaded: "
            f"{first_cause(exc, UserError) or exc}; raw lacks them: run the load again"
        ) from exc
    for table in missed:
        results[table].raw_rows = index_and_count(load.settings, config, config.tables[table])
