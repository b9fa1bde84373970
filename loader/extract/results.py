"""What a load reports, per table and in all, and the error that stops it."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

from loader.config import UserError
from loader.extract.plan import Action
from loader.extract.tables import Mode


class LoadError(UserError, RuntimeError):
    """A load could not run; the message says which table and what to do."""


@dataclass
class TableResult:
    table: str
    mode: Mode
    action: Action
    rows_extracted: int = 0
    source_rows: int | None = None
    raw_rows: int | None = None
    watermark: str | None = None
    seconds: float = 0.0
    drift: list[str] = field(default_factory=list)
    dead_letters: int = 0  # rows the warehouse could not hold, in ops.dead_letters
    repaired: int = 0  # rows extracted again or deleted by the repair after the load
    remaining: list = field(default_factory=list)  # key ranges still differing after it
    repair_error: str | None = None  # why the repair failed, when it did
    caught_up: int = 0  # rows found behind the window by the count scan and loaded
    skew_s: float | None = None  # how far behind the window they lay
    # the count scan searched from an older load than the previous one, whose own search
    # never completed (a kill or a failure after it committed): what it finds may include
    # rows that load brought, loaded again, and says nothing about clocks
    rechecking: bool = False
    # the previous load's search never completed and the state predates search_xmin (an
    # older version of the loader): the search cannot reach back far enough, so the table is
    # compared row by row after the load (settle)
    unsearched: bool = False
    future_rows: int = 0  # rows whose cursor is after the source's clock (a data problem)
    future_keys: list[str] = field(default_factory=list)  # the first of them
    # the source count while it runs (increments count after the export, during the load)
    pending_source_rows: Future | None = field(default=None, repr=False, compare=False)

    @property
    def reconciled(self) -> bool | None:
        if self.source_rows is None or self.raw_rows is None:
            return None
        return self.source_rows == self.raw_rows


@dataclass
class LoadResult:
    load_id: str | None
    tables: dict[str, TableResult]
    seconds: float

    @property
    def rows_extracted(self) -> int:
        return sum(t.rows_extracted for t in self.tables.values())

    @property
    def dead_letters(self) -> int:
        return sum(t.dead_letters for t in self.tables.values())
