"""Item 4: threads for I/O-bound extraction across tables, processes for a CPU-bound transform.

    python benchmarks/parallelism.py [--scale 1]

A. Extraction: the six simulator tables of `bench_src` exported with `COPY ... TO STDOUT
   (FORMAT binary)` into files, as the loader does: one after the other, then 2 and 6 threads.
   Python only waits on sockets and disks here (psycopg2 releases the GIL in COPY).
B. Transformation: a pure-Python row function (trim and lower-case an email, check it with a
   regular expression, hash the row) over M rows, in ranges of 50k rows that each worker reads
   (here: generates) itself: sequential, 2 threads, 2 processes; and 2 processes that are
   sent the rows (pickled) instead of their key range.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness  # noqa: E402
from loader.db import connect_raw  # noqa: E402
from loader.source import simulator  # noqa: E402

EMAIL = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$")


def _export(table: str, folder: str) -> int:
    conn = connect_raw(harness.endpoint(harness.SOURCE_DB))
    try:
        with conn.cursor() as cur, open(Path(folder) / f"{table}.bin", "wb") as out:
            cur.copy_expert(f"copy marketplace.{table} to stdout (format binary)", out,
                            size=1 << 20)
            return cur.rowcount
    finally:
        conn.close()


def extract(workers: int, label: str = "") -> dict:
    folder = harness.settings().home / "bench" / "parallel"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    tables = list(simulator.TABLES)
    t0 = time.perf_counter()
    if workers == 1:
        rows = sum(_export(t, str(folder)) for t in tables)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            rows = sum(pool.map(_export, tables, [str(folder)] * len(tables)))
    seconds = time.perf_counter() - t0
    shutil.rmtree(folder, ignore_errors=True)
    return {"label": label, "rows": rows, "seconds": seconds, "workers": workers}


def _records(lo: int, hi: int) -> list[tuple]:
    return [(i, f"  User.{i}@Example.COM ", f"first {i}", i % 50, i * 0.37) for i in range(lo, hi)]


def transform_rows(rows: list[tuple]) -> int:
    """A CPU-bound per-row function: the kind of Python a transform step runs."""
    valid = 0
    for row in rows:
        email = row[1].strip().lower()
        if EMAIL.match(email):
            valid += 1
        hashlib.sha256(repr((row[0], email, row[2], row[3], row[4])).encode()).hexdigest()
    return valid


def transform_range(bounds: tuple[int, int]) -> int:
    """Read (here: generate) the rows of one key range and transform them, in the worker."""
    return transform_rows(_records(*bounds))


def transform(m: int, mode: str, label: str = "") -> dict:
    """mode: sequential | threads | processes (ranges sent) | processes_rows (rows pickled)."""
    ranges = [(lo, min(m, lo + 50_000)) for lo in range(0, m, 50_000)]
    shipped = [_records(lo, hi) for lo, hi in ranges] if mode == "processes_rows" else None
    t0 = time.perf_counter()
    if mode == "sequential":
        valid = sum(map(transform_range, ranges))
    elif mode == "processes_rows":
        with ProcessPoolExecutor(max_workers=2) as pool:
            valid = sum(pool.map(transform_rows, shipped))
    else:
        executor = ThreadPoolExecutor if mode == "threads" else ProcessPoolExecutor
        with executor(max_workers=2) as pool:
            valid = sum(pool.map(transform_range, ranges))
    seconds = time.perf_counter() - t0
    assert valid == m
    return {"label": label, "rows": m, "seconds": seconds, "mode": mode}


def run(scale: float) -> dict:
    counts = harness.ensure_source(scale)
    print(f"\n[4a] extraction of the six tables of bench_src ({sum(counts.values()):,} rows)")
    extraction = [harness.run_case("benchmarks.parallelism:extract",
                                   {"workers": w, "label": label}, quiet=False)
                  for w, label in ((1, "sequential"), (2, "2 threads"), (6, "6 threads"))]
    m = harness.scaled(1_000_000, scale, floor=50_000)
    print(f"\n[4b] CPU-bound transformation of {m:,} rows")
    transformation = [harness.run_case("benchmarks.parallelism:transform",
                                       {"m": m, "mode": mode, "label": label})
                      for mode, label in (("sequential", "sequential"), ("threads", "2 threads"),
                                          ("processes", "2 processes (key ranges sent)"),
                                          ("processes_rows", "2 processes (rows pickled)"))]
    for name, results in (("extraction", extraction), ("transformation", transformation)):
        base = results[0]["seconds"]
        print(f"    {name} speed-up: " + ", ".join(
            f"{r['label']} {base / r['seconds']:.2f}x" for r in results[1:]))
    out = {"cpus": harness.machine()["cpus"], "extraction": extraction,
           "transformation": transformation}
    harness.save("parallelism", out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    run(parser.parse_args().scale)
