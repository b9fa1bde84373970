"""What a load does to each table (its Action and TablePlan) and what every table of one load
shares (LoadContext); what a caller asks a load for (LoadRequest)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from loader.config import Settings
from loader.extract.catalog import Column
from loader.extract.cut import SourceCut
from loader.extract.tables import LoaderConfig, TableSpec


class Action(StrEnum):
    """What a load does to one table; the value is what the run history and logs record."""

    INITIAL = "initial"  # the first load: the whole table
    FULL = "full"  # the whole table again (mode full, a full refresh, a new column)
    INCREMENT = "increment"  # what changed since the watermark
    BACKFILL = "backfill"  # a window of the cursor again; the watermark stays
    REPAIR = "repair"  # key ranges a reconcile found different
    REPLAY = "replay"  # the keys of dead letters
    CATCH_UP = "catch_up"  # rows the count scan found behind the increment's window
    SKIPPED = "skipped"  # not loaded: schema drift stopped it

    @property
    def whole_table(self) -> bool:
        """It replaces raw's table with all of the source's rows."""
        return self in (Action.INITIAL, Action.FULL)

    @property
    def by_row(self) -> bool:
        """It merges chosen rows into raw whatever the table's mode (a full table too)."""
        return self in (Action.REPAIR, Action.REPLAY, Action.CATCH_UP)

    @property
    def bulk(self) -> bool:
        """It exports whole tables (or windows of them): its COPY goes through psql."""
        return self in (Action.INITIAL, Action.FULL, Action.BACKFILL)

    @property
    def moves_watermark(self) -> bool:
        return self in (Action.INITIAL, Action.FULL, Action.INCREMENT)


@dataclass(frozen=True)
class LoadRequest:
    """Which tables a load takes (all when None) and how: a full refresh drops and reloads
    them; a backfill window re-extracts that cursor window without moving watermarks."""

    tables: list[str] | None = None
    full_refresh: bool = False
    backfill_window: tuple[datetime, datetime] | None = None


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class LoadContext:
    """What every table of one load shares: where it reads and writes, the source snapshot it
    exports from, where export files go, its `_loaded_at` stamp and where progress goes."""

    settings: Settings
    config: LoaderConfig
    cut: SourceCut
    export_dir: Path
    loaded_at: datetime
    progress: Callable[[str], None] = _quiet


@dataclass(frozen=True)
class TablePlan:
    """One table's part of a load: the table, its source columns, the action, and the rows a
    by-row action or a backfill selects (`window`: ctids for a catch-up, (key type, keys) for
    a replay, key ranges for a repair, (start, end) for a backfill)."""

    spec: TableSpec
    columns: list[Column]
    action: Action
    window: object = None
    # an increment's previous load recorded its source count (reconcile.counted_loads): its
    # search for rows behind the window completed, and this one searches on from there
    last_count_done: bool = True
