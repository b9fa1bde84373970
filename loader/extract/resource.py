"""The dlt resource of one table: its column hints and write disposition, its export, and the
watermark it moves in dlt's state."""

from __future__ import annotations

import time

import dlt

from loader.extract import binary_copy, dead_letters, export, reconcile
from loader.extract.catalog import Column
from loader.extract.plan import Action, LoadContext, TablePlan
from loader.extract.queries import CDC_HINTS, LEARNED_LAG_MARGIN, LOAD_HINTS, effective_lag
from loader.extract.results import LoadError, TableResult
from loader.extract.tables import Mode, TableSpec

FUTURE_FIELDS = ("future_rows", "future_keys")  # reported, not kept in the state


def _hints(spec: TableSpec, columns: list[Column], merge: bool) -> dict:
    hints = {c.name: c.hint() for c in columns} | LOAD_HINTS
    if spec.mode == Mode.CDC:
        # the merge-only hints are left out of replace loads (dlt would warn and ignore them)
        hints |= (
            CDC_HINTS
            if merge
            else {
                k: {x: y for x, y in v.items() if x not in ("hard_delete", "dedup_sort")}
                for k, v in CDC_HINTS.items()
            }
        )
    for key in spec.primary_key:
        hints[key] = {**hints[key], "nullable": False}
    return hints


def _write_disposition(spec: TableSpec, action: Action) -> str | dict:
    if action.whole_table:  # a full-mode table's loads are FULL: replace
        return "replace"
    # by-row actions and backfills merge what they select, whatever the mode: a backfill of
    # a full-mode table replacing raw's table with its window would drop every other row
    # the change log holds several versions of a key: delete-insert deduplicates them;
    # cursor increments hold one row per key, and upsert measured faster for those
    strategy = "delete-insert" if spec.mode == Mode.CDC else "upsert"
    return {"disposition": "merge", "strategy": strategy}


def _search_position(plan: TablePlan, state: dict, result: TableResult) -> dict:
    """Where a timestamp increment's count scan searches for rows behind the window from
    (`search_xmin`, kept in the state with the watermark): the previous load's snapshot when
    that load's own search completed (plan.last_count_done), else where that load searched
    from, so that a load killed or failed before its search ended leaves nothing behind.
    Marks `result` rechecking (it searches from further back) or unsearched (a state from an
    older version says nowhere to search from)."""
    if plan.action != Action.INCREMENT or plan.spec.mode != Mode.TIMESTAMP:
        return {}
    if plan.last_count_done or not state.get("search_xmin"):
        result.unsearched = not plan.last_count_done
        return {"search_xmin": state.get("snapshot_xmin")}
    result.rechecking = state["search_xmin"] != state.get("snapshot_xmin")
    return {"search_xmin": state["search_xmin"]}


def table_resource(
    load: LoadContext,
    plan: TablePlan,
    result: TableResult,
):
    """A dlt resource that exports one table with COPY and imports a manifest of the file
    into dlt (binary_copy.write_manifest)."""
    spec, action, progress = plan.spec, plan.action, load.progress
    disposition = _write_disposition(spec, action)

    @dlt.resource(
        name=spec.name,
        primary_key=list(spec.primary_key),
        columns=_hints(spec, plan.columns, merge=disposition != "replace"),
        write_disposition=disposition,
        file_format=binary_copy.IMPORT_FORMAT,
        parallelized=True,
    )
    def rows():
        t0 = time.monotonic()
        progress(f"{spec.name}: extracting ({action})")
        state = dlt.current.resource_state()
        load_id = dlt.current.load_package_state()["load_id"]
        if (action == Action.INCREMENT and spec.mode != Mode.FULL
                and not state.get(spec.watermark_key)):
            raise LoadError(
                f"{spec.name}: the watermark was lost from the pipeline state; "
                f"run `elt load --full-refresh {spec.name}` to reload the table"
            )
        if action.whole_table:
            state.clear()
        path = load.export_dir / f"{spec.name}.{load_id}.{binary_copy.FILE_EXTENSION}"
        search = _search_position(plan, state, result)
        if result.unsearched:
            progress(f"{spec.name}: the previous load's search for rows written behind the "
                     "window did not complete, and the pipeline's state (from an older "
                     "version) does not say where it started: the table is compared with the "
                     "source key range by key range after this load")
        exported = export.export_table(load, plan, {**state, **search}, load_id, path)
        n, position = exported.rows, exported.position
        result.rows_extracted, result.pending_source_rows = n, exported.source_rows
        if exported.set_aside:
            dead_letters.record(load.settings, spec.name, load_id, exported.set_aside)
            progress(
                f"{spec.name}: {len(exported.set_aside)} row(s) with a null or repeated key set "
                f"aside in ops.dead_letters; first: "
                f"{exported.set_aside[0][0] or 'null'} ({exported.set_aside[0][1]})"
            )
        # the keys a cdc increment deletes: tombstones for dbt, written before the merge
        # commits like a whole table's (reconcile.record_deletes)
        reconcile.record_deletes(load.settings, spec.name, exported.deleted_keys,
                                 reason="cdc delete", deleted_at=load.loaded_at, load_id=load_id)
        if position.get("future_rows"):
            result.future_keys = list(position["future_keys"])
            result.future_rows = position["future_rows"]
            progress(
                f"{spec.name}: {result.future_rows} row(s) have {spec.cursor} after the "
                f"source's clock (now()), key(s) {', '.join(result.future_keys)}: the "
                "watermark stops at now(); correct those rows or the writer's clock"
            )
        if action.whole_table:
            # a tombstone for dbt: a table loaded whole may have lost any key (null)
            reconcile.record_deletes(
                load.settings,
                spec.name,
                [None],
                reason=f"{action} load",
                deleted_at=load.loaded_at,
                load_id=load_id,
            )
        if action == Action.CATCH_UP and result.skew_s:
            # later windows reach this far back (effective_lag), for LEARNED_LAG_DAYS
            learned = result.skew_s * LEARNED_LAG_MARGIN + spec.lag.total_seconds()
            if effective_lag(spec, state) < learned:
                state.update(learned_lag_s=round(learned), learned_at=load.loaded_at.isoformat())
        if action.moves_watermark:
            state.update(
                {k: v for k, v in position.items() if v is not None and k not in FUTURE_FIELDS}
            )
            state.update({k: v for k, v in search.items() if v is not None})
            state.update(
                mode=str(spec.mode),
                last_action=str(action),
                last_load_id=load_id,
                last_loaded_at=load.loaded_at.isoformat(),
                rows_extracted=n,
            )
            result.watermark = state.get(spec.watermark_key)
        progress(f"{spec.name}: extracted {n:,} rows ({action}) in {time.monotonic() - t0:.1f}s")
        if n or action.whole_table:
            manifest = binary_copy.write_manifest(
                path.with_suffix(f".{binary_copy.IMPORT_FORMAT}"), path, n, exported.columns
            )
            yield dlt.mark.with_file_import(str(manifest), binary_copy.IMPORT_FORMAT, n)

    return rows
