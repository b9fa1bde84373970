"""What a check produced: the one shape every check, the report, the JSON and alerts share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("pass", "warn", "fail", "error", "skip")
# the order a report lists statuses in, worst first
SEVERITY_ORDER = {"error": 0, "fail": 1, "warn": 2, "skip": 3, "pass": 4}


@dataclass
class CheckResult:
    check_id: str  # stable across runs: what alerts de-duplicate on
    category: str
    name: str
    status: str
    message: str = ""
    table: str | None = None
    observed: float | None = None
    threshold: float | None = None
    failing_rows: int | None = None
    sample: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check {self.check_id}: unknown status {self.status!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(statuses: list[str]) -> str:
    return min(statuses, key=SEVERITY_ORDER.__getitem__, default="pass")


def jsonable(value: Any) -> Any:
    """Plain JSON types: dates as ISO strings, decimals as floats, ±inf and NaN as null
    (PostgreSQL's jsonb and browsers reject them)."""
    import math
    from datetime import date, datetime, time
    from decimal import Decimal

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return jsonable(float(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)
