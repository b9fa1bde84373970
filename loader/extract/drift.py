"""Schema drift: the source's columns against the ones dlt keeps for raw."""

from __future__ import annotations

import dlt

from loader.extract.catalog import Column


def stored_columns(pipeline: dlt.Pipeline, table: str) -> dict[str, dict]:
    try:
        return dict(pipeline.default_schema.tables.get(table, {}).get("columns", {}))
    except Exception:  # no schema yet: first run
        return {}


def detect_drift(stored: dict[str, dict], columns: list[Column]) -> tuple[list[str], list[str]]:
    """Compare the source columns with raw's: (notes, blocking errors)."""
    notes, errors = [], []
    current = {c.name: c for c in columns}
    for name, column in current.items():
        if name not in stored:
            if stored:
                notes.append(f"new column {name} ({column.pg_type}) is added to raw")
            continue
        hint = column.hint()
        before = stored[name]
        if before.get("data_type") != hint["data_type"] or (
            hint["data_type"] in ("decimal", "bigint")
            and (before.get("precision"), before.get("scale"))
            != (hint.get("precision"), hint.get("scale"))
        ):
            errors.append(
                f"column {name} changed type in the source "
                f"({before.get('data_type')} -> {column.pg_type}); raw keeps its data. "
                f"Review it, then run `elt load --full-refresh TABLE` to rebuild the table"
            )
    for name in stored:
        if not name.startswith("_") and name not in current:
            notes.append(
                f"column {name} was dropped in the source; raw keeps it (null in new rows)"
            )
    return notes, errors
