"""Reconciliation that acts: after a load, a table whose source and raw still differ is
compared key range by key range and the ranges that differ are extracted again; what still
differs after that is a failure that names the table, never a word beside SUCCESS."""

from __future__ import annotations

from collections.abc import Callable

from loader.config import Settings, UserError
from loader.extract import reconcile
from loader.extract.plan import Action
from loader.extract.repair import repair_ranges
from loader.extract.results import LoadResult, TableResult
from loader.extract.tables import LoaderConfig


class Unreconciled(UserError, RuntimeError):
    """Raw still differs from the source after the repair; the message names the tables."""


def settle(
    settings: Settings,
    config: LoaderConfig,
    load: LoadResult,
    progress: Callable[[str], None] = lambda _: None,
    *,
    deep: bool = False,
) -> LoadResult:
    """Repair every table of `load` whose counts differ (or that set rows aside, or whose
    search for rows behind the window could not reach back far enough: TableResult.
    unsearched), then compare it again; with `deep`, every table of the load, whatever its
    counts (the scheduled full check of `elt run`). Raise Unreconciled when a difference
    remains."""
    for result in load.tables.values():
        if (result.reconciled is False or result.unsearched
                or (deep and result.action != Action.SKIPPED)):
            _settle_table(settings, config, result, progress)
    left = [r for r in load.tables.values() if r.reconciled is False]
    if left:
        raise Unreconciled(
            "raw still differs from the source after the repair: "
            + "; ".join(_difference(r) for r in left)
            + ". See ops.dead_letters and `elt reconcile --deep --no-repair`; fix the cause, "
            "then run again"
        )
    return load


def _settle_table(
    settings: Settings, config: LoaderConfig, result: TableResult, progress: Callable
) -> None:
    spec = config.tables[result.table]
    progress(
        f"{spec.name}: source {result.source_rows} rows, raw {result.raw_rows}: comparing key "
        "ranges with the source and extracting the ones that differ again"
    )
    try:
        diffs = reconcile.compare(settings, config, spec)
    except ValueError as exc:  # a key deep reconciliation cannot bucket
        progress(f"{spec.name}: cannot repair automatically: {exc}")
        return
    if diffs:
        try:
            result.repaired = repair_ranges(
                settings, config, spec, [(d.key_from, d.key_to) for d in diffs], progress
            )
        except Exception as exc:  # noqa: BLE001 - the table stays unreconciled, said below
            result.repair_error = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
            progress(f"{spec.name}: the repair failed: {result.repair_error}")
        reconcile.recount(settings, config.dataset, spec.name)
    left = reconcile.compare(settings, config, spec)
    reconcile.record_deep(settings, diffs, repaired=True)
    result.remaining = left
    if not left and not result.dead_letters:
        result.source_rows = result.raw_rows = reconcile.raw_count(settings, config, spec.name)
    reconcile.record_settled(settings, result)


def _difference(result: TableResult) -> str:
    if result.dead_letters:
        return f"{result.table}: {result.dead_letters} row(s) in ops.dead_letters"
    ranges = len(result.remaining)
    return (
        f"{result.table}: source {result.source_rows} rows, raw {result.raw_rows}"
        + (f", {ranges} key range(s) differ" if ranges else "")
        + (f" (the repair failed: {result.repair_error})" if result.repair_error else "")
    )
