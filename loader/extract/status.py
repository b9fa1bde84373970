"""What `elt status` shows about the loader: per table mode, watermark, last load, counts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from loader.config import Settings
from loader.db import connect_raw
from loader.extract.pipeline import make_pipeline, table_states
from loader.extract.tables import LoaderConfig


@dataclass(frozen=True)
class TableStatus:
    table: str
    mode: str
    watermark: str | None
    last_load: str | None
    rows_extracted: int | None
    rows_in_raw: int | None
    source_rows: int | None
    reconciled: bool | None

    def as_dict(self) -> dict:
        return asdict(self)


def loader_status(settings: Settings, config: LoaderConfig) -> list[TableStatus]:
    states = table_states(make_pipeline(settings, config))
    recon: dict[str, tuple] = {}
    conn = connect_raw(settings.warehouse)
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('ops.load_reconciliation') is not null")
            if cur.fetchone()[0]:
                cur.execute(
                    """select distinct on (table_name) table_name, source_rows, raw_rows, matched
                       from ops.load_reconciliation order by table_name, checked_at desc"""
                )
                recon = {row[0]: row[1:] for row in cur.fetchall()}
    finally:
        conn.rollback()
        conn.close()
    out = []
    for spec in config.tables.values():
        state = states.get(spec.name, {})
        source_rows, raw_rows, matched = recon.get(spec.name, (None, None, None))
        out.append(
            TableStatus(
                table=spec.name,
                mode=spec.mode,
                watermark=state.get(spec.watermark_key),
                last_load=state.get("last_loaded_at"),
                rows_extracted=state.get("rows_extracted"),
                rows_in_raw=raw_rows,
                source_rows=source_rows,
                reconciled=matched,
            )
        )
    return out
