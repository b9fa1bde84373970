"""Re-extract chosen rows from the source into raw: key ranges a deep reconcile found
different (with the deletes of keys the source lost), and dead letters' keys."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from dlt.pipeline.exceptions import PipelineStepFailed
from psycopg2 import sql

from loader import schemas
from loader.config import Settings
from loader.db import connect_raw, qualified
from loader.errors import causes
from loader.extract.catalog import key_is_enforced, source_columns
from loader.extract.cut import SourceCut
from loader.extract.pipeline import finish_pending, land_load, make_pipeline
from loader.extract.plan import Action, LoadContext, TablePlan
from loader.extract.reconcile import BucketDiff, compare, record_deep, recount
from loader.extract.resource import table_resource
from loader.extract.results import LoadError, TableResult
from loader.extract.tables import LoaderConfig, TableSpec


def _reextract(
    settings: Settings,
    config: LoaderConfig,
    spec: TableSpec,
    action: Action,
    window,
    progress: Callable[[str], None],
) -> tuple[str | None, TableResult]:
    """Extract the rows of `window` (key ranges for a repair, keys for a replay) from the
    source again and merge them into raw; returns the load id and what was extracted. The
    caller reconciles: these loads count nothing and move no watermark."""
    pipeline = make_pipeline(settings, config)
    finish_pending(pipeline, progress)
    export_dir = settings.dlt_dir / "exports"
    export_dir.mkdir(parents=True, exist_ok=True)
    src = connect_raw(settings.source)
    try:
        columns = source_columns(src, config.source_schema, spec.name)
        spec = replace(
            spec, key_enforced=key_is_enforced(src, config.source_schema, spec.name,
                                               spec.primary_key)
        )
    finally:
        src.close()
    if action == Action.REPLAY:
        key_type = next(c for c in columns if c.name == spec.primary_key[0]).pg_type
        window = (key_type, list(window))
    result = TableResult(spec.name, spec.mode, action)
    try:
        info = pipeline.run(
            table_resource(
                LoadContext(settings, config, SourceCut(), export_dir, datetime.now(UTC),
                            progress),
                TablePlan(spec, columns, action, window),
                result,
            )
        )
    except PipelineStepFailed as exc:
        # nothing of it committed (one merge): leave no package for the next load to retry
        pipeline.abort_packages()
        root = causes(exc)[-1]
        raise LoadError(
            f"{spec.name}: the {action} failed: {str(root).strip().splitlines()[0]}"
        ) from exc
    finally:
        shutil.rmtree(export_dir, ignore_errors=True)
    return (info.loads_ids[-1] if info.loads_ids else None), result


def reload_keys(
    settings: Settings,
    config: LoaderConfig,
    spec: TableSpec,
    keys: list[str],
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[str | None, int]:
    """Extract the rows of these keys (of a single-column key) from the source again and
    merge them into raw: a replay of dead letters. Returns the load id and rows extracted."""
    if len(spec.primary_key) != 1:
        raise LoadError(f"{spec.name}: a replay needs a single-column key; run "
                        f"`elt load --full-refresh {spec.name}` instead")
    since = datetime.now(UTC)
    load_id, result = _reextract(settings, config, spec, Action.REPLAY, keys, progress)
    if settings.aws.s3_url and load_id:
        land_load(settings, config, load_id, since, {spec.name: result}, progress)
    return load_id, result.rows_extracted


def repair_ranges(
    settings: Settings,
    config: LoaderConfig,
    spec: TableSpec,
    ranges: list[tuple[int, int]],
    progress: Callable[[str], None] = lambda _: None,
) -> int:
    """Re-extract the key ranges from the source and delete raw rows the source no longer has."""
    since = datetime.now(UTC)
    load_id, result = _reextract(settings, config, spec, Action.REPAIR, ranges, progress)
    # the landing zone gets the repair as a load of its own: its rows and its deletes
    load_id = load_id or f"{datetime.now(UTC).timestamp():.6f}"
    key = spec.primary_key[0]
    multirange = "{" + ",".join(f"[{lo},{hi}]" for lo, hi in ranges) + "}"
    src = connect_raw(settings.source)
    try:
        with src.cursor() as cur:
            cur.execute(
                sql.SQL("select array_agg({k}) from {t} where %s::int8multirange @> {k}").format(
                    k=sql.Identifier(key), t=qualified(config.source_schema, spec.name)
                ),
                (multirange,),
            )
            keys = cur.fetchone()[0] or []
    finally:
        src.close()
    schemas.ensure_on(settings.warehouse, "ops")
    conn = connect_raw(settings.warehouse)
    try:
        with conn, conn.cursor() as cur:
            # the rows the source no longer has, and their tombstones for dbt, in one
            # transaction (reconcile.record_deletes)
            cur.execute(
                sql.SQL(
                    "with gone as (delete from {t} where %s::int8multirange @> {k} "
                    "and not ({k} = any(%s)) returning {k}) "
                    "insert into ops.raw_deletes (table_name, row_key, load_id, reason, "
                    "deleted_at) select %s, {k}, %s, 'reconcile repair', now() from gone"
                ).format(k=sql.Identifier(key), t=qualified(config.dataset, spec.name)),
                (multirange, keys, spec.name, load_id),
            )
            deleted = cur.rowcount
    finally:
        conn.close()
    if settings.aws.s3_url and (result.rows_extracted or deleted):
        land_load(settings, config, load_id, since, {spec.name: result}, progress)
    progress(
        f"{spec.name}: repaired {len(ranges)} key range(s): {result.rows_extracted} rows "
        f"re-extracted, {deleted} rows deleted from raw"
    )
    return result.rows_extracted + deleted


def deep_reconcile(
    settings: Settings,
    config: LoaderConfig,
    tables: list[str] | None = None,
    *,
    repair: bool = True,
    width: int = 10_000,
    progress: Callable[[str], None] = lambda _: None,
) -> list[BucketDiff]:
    """Compare every table by key bucket; re-extract the buckets that differ."""
    found: list[BucketDiff] = []
    for spec in config.select(tables):
        diffs = compare(settings, config, spec, width)
        for d in diffs:
            progress(
                f"{spec.name}: keys {d.key_from}-{d.key_to} differ "
                f"(source {d.source_rows} rows, raw {d.raw_rows})"
            )
        if diffs and repair:
            repair_ranges(
                settings, config, spec, [(d.key_from, d.key_to) for d in diffs], progress=progress
            )
        if repair:
            recount(settings, config.dataset, spec.name)
        found.extend(diffs)
        record_deep(settings, diffs, repaired=repair)
    return found
