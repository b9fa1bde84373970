"""Item 1: loading N rows, from row-by-row INSERT to binary COPY, source table to target table.

    python benchmarks/insert_methods.py [--scale 1]

Every method moves the same synthetic nine-column table (`bench_data.items_N`) into an empty,
unindexed table of another database of the same server, reading included (a loader reads
too). Each runs in its own process; peak RSS is that process's. The slow methods run on a
subset of N (row-by-row INSERT and executemany N/50, pandas' default and 'multi' to_sql N/20,
execute_values and pandas with COPY N/4): their rows/s do not depend on N, and the full N
would take minutes.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness  # noqa: E402
from loader.db import connect_raw  # noqa: E402

TARGET = "bench_insert"
METHODS = [
    # (method, label, share of N it runs on)
    ("row_by_row", "row-by-row INSERT", 1 / 50),
    ("executemany", "executemany", 1 / 50),
    ("execute_values", "execute_values (multi-row INSERT)", 1 / 4),
    ("pandas_default", "pandas to_sql (default)", 1 / 20),
    ("pandas_multi", "pandas to_sql (method='multi')", 1 / 20),
    ("pandas_copy", "pandas to_sql (COPY method)", 1 / 4),
    ("copy_text", "COPY text", 1),
    ("copy_csv", "COPY csv", 1),
    ("copy_binary", "COPY binary", 1),
]
INSERT = f"insert into t ({', '.join(harness.ITEMS_COLUMNS)}) values "


def _target():
    dst = harness.recreate(TARGET)
    conn = connect_raw(dst)
    with conn.cursor() as cur:
        cur.execute(f"create table t ({harness.ITEMS_DDL})")
    conn.commit()
    return conn


def _rows(source: str, limit: int):
    """A server-side cursor over the first `limit` rows (psycopg2 fetches itersize at a time)."""
    src = connect_raw(harness.endpoint(harness.DATA_DB))
    cur = src.cursor(name="bench_read")
    cur.itersize = 10_000
    cur.execute(f"select * from {source} where id <= %s order by id", (limit,))
    return src, cur


def _batches(cur, size: int):
    while batch := cur.fetchmany(size):
        yield batch


def _copy_pipe(source: str, limit: int, options: str, conn) -> None:
    """COPY TO STDOUT streamed through a pipe into COPY FROM STDIN: no Python rows at all."""
    src = connect_raw(harness.endpoint(harness.DATA_DB))
    r, w = os.pipe()

    def produce() -> None:
        with os.fdopen(w, "wb") as out, src.cursor() as cur:
            query = f"select * from {source} where id <= {limit}"
            cur.copy_expert(f"copy ({query}) to stdout {options}", out, size=1 << 20)

    producer = threading.Thread(target=produce)
    producer.start()
    with os.fdopen(r, "rb") as inp, conn.cursor() as cur:
        cur.copy_expert(f"copy t from stdin {options}", inp, size=1 << 20)
    producer.join()
    src.close()


def _pandas(source: str, limit: int, method) -> None:
    import pandas as pd
    import sqlalchemy as sa

    src = sa.create_engine(harness.endpoint(harness.DATA_DB).sqlalchemy_url)
    dst = sa.create_engine(harness.endpoint(TARGET).sqlalchemy_url)
    with src.connect() as conn:
        frames = pd.read_sql(
            sa.text(f"select * from {source} where id <= :n order by id"),
            conn.execution_options(stream_results=True),
            params={"n": limit},
            chunksize=50_000,
        )
        for frame in frames:
            frame.to_sql("t", dst, if_exists="append", index=False, method=method,
                         chunksize=10_000)
    src.dispose()
    dst.dispose()


def psql_insert_copy(table, conn, keys, data_iter) -> int:
    """The COPY method from pandas' documentation (io.sql, 'Insertion method')."""
    buf = io.StringIO()
    csv.writer(buf).writerows(data_iter)
    buf.seek(0)
    columns = ", ".join(f'"{k}"' for k in keys)
    name = f"{table.schema}.{table.name}" if table.schema else table.name
    with conn.connection.cursor() as cur:
        cur.copy_expert(f"copy {name} ({columns}) from stdin with (format csv)", buf)
        return cur.rowcount


def case(method: str, rows: int, source: str, label: str = "") -> dict:
    from psycopg2.extras import execute_values

    conn = _target()
    t0 = time.perf_counter()
    if method in ("row_by_row", "executemany", "execute_values"):
        src, cur = _rows(source, rows)
        placeholders = "(" + ", ".join(["%s"] * len(harness.ITEMS_COLUMNS)) + ")"
        with conn.cursor() as out:
            for batch in _batches(cur, 10_000):
                if method == "row_by_row":
                    for row in batch:
                        out.execute(INSERT + placeholders, row)
                elif method == "executemany":
                    out.executemany(INSERT + placeholders, batch)
                else:
                    execute_values(out, INSERT + "%s", batch, page_size=1000)
        src.close()
    elif method.startswith("pandas"):
        _pandas(source, rows, {"pandas_default": None, "pandas_multi": "multi",
                               "pandas_copy": psql_insert_copy}[method])
    else:
        options = {"copy_text": "", "copy_csv": "with (format csv)",
                   "copy_binary": "with (format binary)"}[method]
        _copy_pipe(source, rows, options, conn)
    conn.commit()
    seconds = time.perf_counter() - t0
    with conn.cursor() as cur:
        cur.execute("select count(*) from t")
        loaded = cur.fetchone()[0]
    conn.close()
    assert loaded == rows, f"{method} loaded {loaded} of {rows} rows"
    return {"method": method, "label": label, "rows": rows, "seconds": seconds}


def run(scale: float) -> dict:
    n = harness.scaled(1_000_000, scale, floor=20_000)
    source = harness.ensure_items(n)
    print(f"\n[1] loading {n:,} rows (subsets where noted), source table to target table")
    results = []
    for method, label, share in METHODS:
        rows = max(1000, int(n * share))
        if share < 1:
            label += f" (N/{round(1 / share)})"
        results.append(harness.run_case(
            "benchmarks.insert_methods:case",
            {"method": method, "rows": rows, "source": source, "label": label},
            drop=TARGET,
        ))
    base = next(r for r in results if r["method"] == "row_by_row")["rows_per_s"]
    print("    ratio to row-by-row INSERT (same run): " + ", ".join(
        f"{r['method']} {r['rows_per_s'] / base:.1f}x" for r in results))
    out = {"n": n, "results": results}
    harness.save("insert_methods", out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    run(parser.parse_args().scale)
