"""The loader's table config (tables.yml): which tables, their keys, modes and cursors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

import yaml

from loader.config import UserError


class Mode(StrEnum):
    """How a table's changes are found: by a cursor column, from the change log, or not at
    all (the whole table each load)."""

    TIMESTAMP = "timestamp"
    CDC = "cdc"
    FULL = "full"

_LAG = re.compile(r"^\s*(\d+)\s*(second|minute|hour|day)s?\s*$")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


class TableConfigError(UserError, ValueError):
    """tables.yml is invalid; the message names the file, table and key."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    primary_key: tuple[str, ...]
    mode: Mode
    cursor: str | None = None
    lag: timedelta = timedelta(minutes=15)
    # whether the source guarantees the key unique and not null (read from its catalog at each
    # load, catalog.key_is_enforced); where it does not, rows with a null or repeated key are
    # set aside as dead letters instead of loaded
    key_enforced: bool = True

    def check_against(self, schema: str, columns: set[str]) -> None:
        """An error naming the fix when the key or cursor is not a column of the source."""
        missing = [c for c in (*self.primary_key, self.cursor) if c and c not in columns]
        if missing:
            raise TableConfigError(
                f"tables.{self.name}: column(s) {', '.join(missing)} not in source table "
                f"{schema}.{self.name}, which has {', '.join(sorted(columns))}; fix "
                "primary_key / cursor in tables.yml (ELT_TABLES_CONFIG)"
            )

    @property
    def watermark_key(self) -> str:
        """The state key of where the next increment starts: the change log's transaction id
        (cdc), else the cursor's watermark."""
        return "cdc_txid" if self.mode == Mode.CDC else "watermark"


@dataclass(frozen=True)
class LoaderConfig:
    source_schema: str
    dataset: str
    cdc_table: str | None
    tables: dict[str, TableSpec] = field(default_factory=dict)

    def select(self, names: list[str] | None) -> list[TableSpec]:
        """The specs for `names` (all when empty), with an error naming unknown tables."""
        if not names:
            return list(self.tables.values())
        unknown = [n for n in names if n not in self.tables]
        if unknown:
            raise TableConfigError(
                f"unknown table(s) {', '.join(unknown)}: the config lists {', '.join(self.tables)}"
            )
        return [self.tables[n] for n in names]


def parse_lag(text: str, where: str) -> timedelta:
    match = _LAG.match(str(text))
    if not match:
        raise TableConfigError(f"{where}: lag {text!r} is not like '15 minutes' or '1 hour'")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(**{f"{unit}s": amount})


def _ident(value: object, where: str) -> str:
    if not isinstance(value, str) or not _IDENT.match(value):
        raise TableConfigError(f"{where}: {value!r} is not a lower-case SQL identifier")
    return value


def load_config(path: Path) -> LoaderConfig:
    """Read and validate tables.yml."""
    if not path.exists():
        raise TableConfigError(f"{path} not found: set ELT_TABLES_CONFIG or create it")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TableConfigError(f"{path} is not valid YAML: {exc}") from None
    default_lag = parse_lag(doc.get("defaults", {}).get("lag", "15 minutes"), f"{path}: defaults")
    cdc_table = (doc.get("cdc") or {}).get("table")
    specs: dict[str, TableSpec] = {}
    for name, entry in (doc.get("tables") or {}).items():
        where = f"{path}: tables.{name}"
        _ident(name, where)
        entry = entry or {}
        pk = entry.get("primary_key")
        if not pk:
            raise TableConfigError(f"{where}: primary_key is required")
        keys = tuple(_ident(k, where) for k in ([pk] if isinstance(pk, str) else pk))
        if entry.get("mode", Mode.TIMESTAMP) not in tuple(Mode):
            raise TableConfigError(f"{where}: mode {entry['mode']!r} is not one of "
                                   f"{', '.join(Mode)}")
        mode = Mode(entry.get("mode", Mode.TIMESTAMP))
        cursor = entry.get("cursor")
        if mode == Mode.TIMESTAMP and not cursor:
            raise TableConfigError(f"{where}: mode timestamp needs a cursor column")
        if mode == Mode.CDC and not cdc_table:
            raise TableConfigError(f"{where}: mode cdc needs `cdc: table:` at the top level")
        specs[name] = TableSpec(
            name=name,
            primary_key=keys,
            mode=mode,
            cursor=_ident(cursor, where) if cursor else None,
            lag=parse_lag(entry["lag"], where) if "lag" in entry else default_lag,
        )
    if not specs:
        raise TableConfigError(f"{path}: no tables listed under `tables:`")
    return LoaderConfig(
        source_schema=_ident(doc.get("source_schema", "public"), f"{path}: source_schema"),
        dataset=_ident(doc.get("dataset", "raw_marketplace"), f"{path}: dataset"),
        cdc_table=cdc_table,
        tables=specs,
    )
