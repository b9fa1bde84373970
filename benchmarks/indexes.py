"""Item 3: load with the indexes in place vs drop, load, rebuild; for a bulk load and increments.

    python benchmarks/indexes.py [--scale 1]

The target table has a primary key and two secondary indexes (customer_id, ordered_at), like
a warehouse table with a merge key and two lookup indexes. Rows arrive by binary COPY from
the synthetic source table. Cases:
- bulk initial load of N rows into the empty table;
- increments of 1% and 10% of N into the table already holding N rows (its load is set-up,
  not timed).
Each way is timed to the point where the table is loaded *and* indexed.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness  # noqa: E402
from loader.db import connect_raw  # noqa: E402

TARGET = "bench_index"
INDEXES = [
    "alter table t add constraint t_pkey primary key (id)",
    "create index t_customer on t (customer_id)",
    "create index t_ordered_at on t (ordered_at)",
]
DROP = ["alter table t drop constraint t_pkey", "drop index t_customer", "drop index t_ordered_at"]


def _copy_in(conn, source: str, lo: int, hi: int) -> None:
    """Rows lo..hi of the source table into t, streamed with binary COPY."""
    src = connect_raw(harness.endpoint(harness.DATA_DB))
    r, w = os.pipe()

    def produce() -> None:
        with os.fdopen(w, "wb") as out, src.cursor() as cur:
            cur.copy_expert(
                f"copy (select * from {source} where id between {lo} and {hi}) "
                "to stdout (format binary)", out, size=1 << 20)

    producer = threading.Thread(target=produce)
    producer.start()
    with os.fdopen(r, "rb") as inp, conn.cursor() as cur:
        cur.copy_expert("copy t from stdin (format binary)", inp, size=1 << 20)
    producer.join()
    src.close()


def case(source: str, n: int, increment: int, strategy: str, label: str = "") -> dict:
    """Load `increment` rows (the whole N when increment == 0) with `strategy` keep|rebuild."""
    conn = connect_raw(harness.recreate(TARGET), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"create table t ({harness.ITEMS_DDL})")
        if increment:
            # set-up: the table as a previous load left it, loaded, indexed, vacuumed
            _copy_in(conn, source, 1, n)
            for statement in INDEXES:
                cur.execute(statement)
            cur.execute("vacuum analyze t")
            cur.execute("checkpoint")
        elif strategy == "keep":
            for statement in INDEXES:
                cur.execute(statement)
    lo, hi = (n + 1, n + increment) if increment else (1, n)
    t0 = time.perf_counter()
    conn.autocommit = False
    with conn.cursor() as cur:
        if strategy == "rebuild" and increment:
            for statement in DROP:
                cur.execute(statement)
        _copy_in(conn, source, lo, hi)
        if strategy == "rebuild":
            for statement in INDEXES:
                cur.execute(statement)
    conn.commit()
    seconds = time.perf_counter() - t0
    conn.close()
    return {"label": label, "rows": hi - lo + 1, "seconds": seconds, "strategy": strategy,
            "increment": increment}


def run(scale: float) -> dict:
    n = harness.scaled(1_000_000, scale, floor=20_000)
    # the increments' rows come after the first N: one table of 1.1 N rows serves every case
    source = harness.ensure_items(n + n // 10)
    print(f"\n[3] indexes (primary key + 2): keep them vs drop, load, rebuild; N = {n:,}")
    results = []
    for increment, what in ((0, "bulk load of N"), (n // 100, "increment of 1%"),
                            (n // 10, "increment of 10%")):
        for strategy, how in (("keep", "indexes in place"), ("rebuild", "drop, load, rebuild")):
            r = harness.run_case("benchmarks.indexes:case",
                                 {"source": source, "n": n, "increment": increment,
                                  "strategy": strategy, "label": f"{what}: {how}"},
                                 drop=TARGET)
            r["case"] = what
            results.append(r)
    for what in dict.fromkeys(r["case"] for r in results):
        keep, rebuild = (next(r for r in results if r["case"] == what and r["strategy"] == s)
                         for s in ("keep", "rebuild"))
        winner = "drop, load, rebuild" if rebuild["seconds"] < keep["seconds"] else "keep indexes"
        print(f"    {what}: keep / rebuild = {keep['seconds'] / rebuild['seconds']:.2f} "
              f"-> {winner} wins")
    out = {"n": n, "results": results}
    harness.save("indexes", out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    run(parser.parse_args().scale)
