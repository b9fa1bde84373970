"""Replay dead letters: extract their rows from the source again by key, once the cause is
fixed, and settle each letter (replayed, gone from the source, or rejected again)."""

from __future__ import annotations

from collections.abc import Callable

from loader.config import Settings
from loader.db import connect_raw
from loader.extract.dead_letters import Letter, ReplayResult, _cursor, letters
from loader.extract.repair import reload_keys
from loader.extract.tables import LoaderConfig, TableSpec


def replay(
    settings: Settings,
    config: LoaderConfig,
    table: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> ReplayResult:
    """Extract the pending dead letters' rows from the source again, by key, once their
    cause is fixed (at the source or in the warehouse), and mark each one: `replayed` when
    its key is in raw now, `gone` when the source no longer has it; a row rejected again
    stays pending with the new error (one letter per row, its attempts counted). Idempotent:
    a second replay finds nothing pending."""
    result = ReplayResult()
    pending = letters(settings, table)
    by_table: dict[str, list[Letter]] = {}
    for letter in pending:
        by_table.setdefault(letter.table_name, []).append(letter)
    for name, batch in by_table.items():
        spec = config.tables.get(name)
        keys = sorted({lt.row_key for lt in batch if lt.row_key})
        if spec is None or not keys:
            result.skipped[name] = ("not in tables.yml" if spec is None
                                    else "rows without a key: they arrive when fixed at the source")
            continue
        try:
            load_id, _ = reload_keys(settings, config, spec, keys, progress)
        except Exception as exc:  # noqa: BLE001 - reported per table, the others go on
            _attempted(settings, name, keys, str(exc).strip()[:1000])
            result.failing[name] = len(keys)
            result.skipped[name] = f"rejected again: {str(exc).strip()[:300]}"
            continue
        _settle(settings, config, spec, keys, load_id, result)
    return result


def _settle(
    settings: Settings,
    config: LoaderConfig,
    spec: TableSpec,
    keys: list[str],
    load_id: str | None,
    result: ReplayResult,
) -> None:
    """Mark the letters of `keys` after their replay `load_id`."""
    table, key = spec.name, spec.primary_key[0]
    raw = _present(settings.warehouse, config.dataset, table, key, keys)
    source = _present(settings.source, config.source_schema, table, key, keys)
    with _cursor(settings) as cur:
        # rows rejected again: the replay's own letter carries the new error; fold it into
        # the pending one (one letter per row)
        cur.execute(
            "with again as (delete from ops.dead_letters where load_id = %s "
            "and table_name = %s returning row_key, error) "
            "update ops.dead_letters d set error = again.error, attempts = attempts + 1 "
            "from again where d.table_name = %s and d.row_key = again.row_key "
            "and d.resolved_at is null",
            (load_id or "", table, table),
        )
        for resolution, found in (("replayed", raw), ("gone from the source",
                                                       set(keys) - source)):
            cur.execute(
                "update ops.dead_letters set resolved_at = now(), resolution = %s "
                "where table_name = %s and row_key = any(%s) and resolved_at is null",
                (f"{resolution} ({load_id})" if resolution == "replayed" else resolution,
                 table, sorted(found)),
            )
            (result.replayed if resolution == "replayed" else result.gone)[table] = (
                cur.rowcount
            )
        cur.execute("select count(*) from ops.dead_letters where table_name = %s "
                    "and resolved_at is null", (table,))
        result.failing[table] = cur.fetchone()[0]


def _attempted(settings: Settings, table: str, keys: list[str], error: str) -> None:
    """A replay of these keys failed whole: count the attempt, keep the newest error."""
    with _cursor(settings) as cur:
        cur.execute(
            "update ops.dead_letters set attempts = attempts + 1, error = %s "
            "where table_name = %s and row_key = any(%s) and resolved_at is null",
            (error, table, keys),
        )


def _present(endpoint, schema: str, table: str, key: str, keys: list[str]) -> set[str]:
    conn = connect_raw(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f'select "{key}"::text from "{schema}"."{table}" where "{key}"::text = any(%s)',
                (keys,),
            )
            return {r[0] for r in cur.fetchall()}
    finally:
        conn.rollback()
        conn.close()
