"""Rows set aside instead of loaded (ops.dead_letters): rows the warehouse rejected
(binary_copy), and rows whose key the source leaves null or repeated (the export)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from psycopg2.extras import execute_values

from loader.config import Settings
from loader.db import connect_raw
from loader.extract.tables import LoaderConfig


@contextmanager
def _cursor(settings: Settings) -> Iterator:
    """A cursor in one warehouse transaction (committed on success). ops.dead_letters is
    there: the load, the run and `elt deadletters` bring the ops schema up to date first
    (loader/schemas)."""
    conn = connect_raw(settings.warehouse)
    try:
        with conn, conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def record(
    settings: Settings, table: str, load_id: str, rows: Sequence[tuple[str | None, str, dict]]
) -> None:
    """Store (key, reason, row image) of rows set aside by the load `load_id`."""
    with _cursor(settings) as cur:
        execute_values(
            cur,
            "insert into ops.dead_letters (table_name, row_key, error, load_id, row_image) "
            "values %s",
            [(table, key, reason, load_id, json.dumps(image)) for key, reason, image in rows],
        )


@dataclass
class Letter:
    dead_letter_id: int
    table_name: str
    row_key: str | None
    error: str
    load_id: str
    created_at: datetime
    resolution: str | None
    attempts: int
    row_image: dict | None = None


@dataclass
class ReplayResult:
    replayed: dict[str, int] = field(default_factory=dict)  # table -> rows now in raw
    gone: dict[str, int] = field(default_factory=dict)  # table -> keys no longer in source
    failing: dict[str, int] = field(default_factory=dict)  # table -> still rejected
    skipped: dict[str, str] = field(default_factory=dict)  # table -> why not replayed


def letters(
    settings: Settings, table: str | None = None, *, resolved: bool = False,
    letter_id: int | None = None,
) -> list[Letter]:
    """Dead letters, newest first: pending ones (or all, with `resolved`), of one table or
    all, or the one with `letter_id`."""
    with _cursor(settings) as cur:
        cur.execute(
            "select dead_letter_id, table_name, row_key, error, load_id, created_at, "
            "resolution, attempts, row_image from ops.dead_letters "
            "where (%(table)s::text is null or table_name = %(table)s) "
            "and (%(all)s or resolved_at is null) "
            "and (%(id)s::bigint is null or dead_letter_id = %(id)s) "
            "order by dead_letter_id desc",
            {"table": table, "all": resolved or letter_id is not None, "id": letter_id},
        )
        return [Letter(*row) for row in cur.fetchall()]


def discard(settings: Settings, letter_id: int, reason: str = "discarded by hand") -> bool:
    """Mark one pending dead letter as discarded (kept, with when and why)."""
    with _cursor(settings) as cur:
        cur.execute(
            "update ops.dead_letters set resolved_at = now(), resolution = %s "
            "where dead_letter_id = %s and resolved_at is null",
            (reason, letter_id),
        )
        return cur.rowcount == 1


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
    from loader.extract.pipeline import reload_keys  # the loader sits above this module

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
        _settle(settings, config, name, keys, load_id, result)
    return result


def _settle(settings, config, table, keys, load_id, result) -> None:
    """Mark the letters of `keys` after their replay `load_id`."""
    key = config.tables[table].primary_key[0]
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
