"""The quality layer's configuration file (monitors.yml): thresholds and anomaly monitors."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from loader.config import UserError, dbt_relation


class MonitorConfigError(UserError, ValueError):
    """monitors.yml is missing or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class AnomalySettings:
    sensitivity: float = 3.0
    training_days: int = 56
    detection_days: int = 3
    min_training_points: int = 7
    min_distribution_shift: float = 0.1
    severity: str = "warn"


@dataclass(frozen=True)
class FreshnessSettings:
    loaded_at_column: str = "_loaded_at"
    warn_after_hours: float = 26
    error_after_hours: float = 50
    lag_column: str = "updated_at"
    lag_warn_minutes: float = 60
    lag_error_minutes: float = 1440


@dataclass(frozen=True)
class ProfilingSettings:
    """When a table's whole-table profile is recomputed rather than carried forward (with the
    rows loaded since it profiled on their own): older than `refresh_days` (0: never by age),
    or more rows loaded since than `refresh_changed_pct` % of the rows it covered."""

    refresh_days: float = 7
    refresh_changed_pct: float = 10
    # schemas or schema.tables whose writer stamps every row it inserts or rewrites with a
    # newer _loaded_at (the loader's raw dataset); a changed table elsewhere (a dimension whose
    # lifetime value moves when an order arrives) is profiled whole again
    stamped: tuple[str, ...] = ("raw_marketplace",)

    def is_stamped(self, table: str) -> bool:
        return table in self.stamped or table.split(".", 1)[0] in self.stamped


@dataclass(frozen=True)
class Monitor:
    """Daily metrics of one table, bucketed on its business timestamp."""

    table: str
    timestamp: str
    volume: bool = True
    volume_seasonality: str | None = None
    freshness: bool = False
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    amounts: tuple[str, ...] = ()


@dataclass(frozen=True)
class QualityConfig:
    anomaly: AnomalySettings
    freshness: FreshnessSettings
    completeness: dict[str, dict[str, float]]
    completeness_severity: str
    profiles: tuple[str, ...]
    monitors: tuple[Monitor, ...]
    profiling: ProfilingSettings = field(default_factory=ProfilingSettings)


COLUMN_METRICS = ("null_pct", "average", "distinct_count")


def _split(name: str, where: str) -> str:
    if name.count(".") != 1:
        raise MonitorConfigError(f"{where}: table {name!r} must be schema.table")
    return name


def load_quality_config(path: Path) -> QualityConfig:
    try:
        doc: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise MonitorConfigError(
            f"quality config {path} not found: set ELT_QUALITY_CONFIG or restore the file"
        ) from None
    except yaml.YAMLError as exc:
        raise MonitorConfigError(f"{path} is not valid YAML: {exc}") from None
    try:
        anomaly = AnomalySettings(**(doc.get("anomaly") or {}))
        freshness = FreshnessSettings(**(doc.get("freshness") or {}))
        profiling_doc = dict(doc.get("profiling") or {})
        if "stamped" in profiling_doc:
            profiling_doc["stamped"] = tuple(profiling_doc["stamped"] or ())
        profiling = ProfilingSettings(**profiling_doc)
    except TypeError as exc:
        raise MonitorConfigError(f"{path}: {exc}") from None
    if profiling.refresh_days < 0 or profiling.refresh_changed_pct < 0:
        raise MonitorConfigError(f"{path}: profiling refresh settings must be 0 or more")
    if anomaly.severity not in ("warn", "fail"):
        raise MonitorConfigError(f"{path}: anomaly.severity must be warn or fail")
    comp = doc.get("completeness") or {}
    monitors = []
    for i, m in enumerate(doc.get("monitors") or []):
        where = f"{path}: monitors[{i}]"
        if "table" not in m or "timestamp" not in m:
            raise MonitorConfigError(f"{where} needs table and timestamp")
        columns = {c: tuple(ms) for c, ms in (m.get("columns") or {}).items()}
        for col, metrics in columns.items():
            unknown = set(metrics) - set(COLUMN_METRICS)
            if unknown:
                raise MonitorConfigError(
                    f"{where}: column {col} has unknown metrics {sorted(unknown)}; "
                    f"use {', '.join(COLUMN_METRICS)}"
                )
        volume = m.get("volume", {})
        monitors.append(
            Monitor(
                table=_split(m["table"], where),
                timestamp=m["timestamp"],
                volume=volume is not False and volume is not None,
                volume_seasonality=(volume or {}).get("seasonality"),
                freshness=bool(m.get("freshness", False)),
                columns=columns,
                categories=tuple(m.get("categories") or ()),
                amounts=tuple(m.get("amounts") or ()),
            )
        )
    return QualityConfig(
        anomaly=anomaly,
        freshness=freshness,
        completeness={
            _split(t, f"{path}: completeness"): {c: float(v) for c, v in cols.items()}
            for t, cols in (comp.get("tables") or {}).items()
        },
        completeness_severity=comp.get("severity", "fail"),
        profiles=tuple(_split(t, f"{path}: profiles") for t in doc.get("profiles") or ()),
        monitors=tuple(monitors),
        profiling=profiling,
    )


def for_environment(config: QualityConfig, env: str) -> QualityConfig:
    """The config with dbt's schemas named as environment `env` builds them (monitors.yml
    names prod's: marts.fct_orders is staging_marts.fct_orders under ELT_ENV=staging)."""

    def rel(name: str) -> str:
        return dbt_relation(env, name)

    return replace(
        config,
        completeness={rel(t): cols for t, cols in config.completeness.items()},
        profiles=tuple(rel(t) for t in config.profiles),
        monitors=tuple(replace(m, table=rel(m.table)) for m in config.monitors),
        profiling=replace(
            config.profiling, stamped=tuple(rel(t) for t in config.profiling.stamped)
        ),
    )
