"""Increment cost: a one-day increment vs the initial load, and cost vs changed rows vs size.

    python benchmarks/increment_cost.py [--scale 1]

1. builds a source at --scale and a tenth of it, loads both (initial load, timed INITIALS
   times into a fresh warehouse on the large source: the median counts);
2. simulates one day and loads the increment (timed) on the large source, DAYS times: the
   one-day cost is the median (runs on this machine differ by 10-30% from one to the next).
   Every timed load starts after a checkpoint, as in load_throughput.py;
3. updates 1k, 10k and 100k orders and loads each increment on the large source, and 10k on
   the small one: the cost follows the changed rows, not the table size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.load_throughput import recreate, settle  # noqa: E402
from loader import warehouse  # noqa: E402
from loader.config import load_settings  # noqa: E402
from loader.db import connect_raw  # noqa: E402
from loader.extract.pipeline import run_load  # noqa: E402
from loader.extract.tables import load_config  # noqa: E402
from loader.source import simulator  # noqa: E402


def setup(base, name: str, scale: float):
    recreate(base, f"{name}_src")
    recreate(base, f"{name}_wh")
    s = replace(
        base,
        source=base.warehouse.with_database(f"{name}_src"),
        warehouse=base.warehouse.with_database(f"{name}_wh"),
        home=base.home / "bench" / name,
    )
    shutil.rmtree(s.home, ignore_errors=True)
    simulator.init(s.source, simulator.SimConfig(scale=scale, seed=5))
    return s


def timed_load(s, config) -> tuple[float, int]:
    t0 = time.perf_counter()
    result = run_load(s, config)
    return time.perf_counter() - t0, result.rows_extracted


def touch_orders(s, n: int) -> None:
    conn = connect_raw(s.source)
    with conn, conn.cursor() as cur:
        cur.execute(
            "update marketplace.orders set shipping_state = shipping_state "
            "where order_id in (select order_id from marketplace.orders order by order_id "
            "limit %s)", (n,)
        )
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--days", type=int, default=3, help="one-day increments to time")
    parser.add_argument("--initials", type=int, default=3, help="initial loads to time")
    args = parser.parse_args()
    base = load_settings()
    warehouse.ensure_running(base)
    config = load_config(base.tables_config)
    big = setup(base, "bench_inc_big", args.scale)
    small = setup(base, "bench_inc_small", args.scale / 10)
    initials = []
    for n in range(1, args.initials + 1):
        if n > 1:  # the same source into a fresh warehouse
            recreate(base, big.warehouse.database)
            shutil.rmtree(big.home, ignore_errors=True)
        settle(base)
        seconds, init_rows = timed_load(big, config)
        initials.append(seconds)
        print(f"initial load {n}, scale {args.scale:g}: {init_rows:,} rows in {seconds:.1f}s")
    init_s = statistics.median(initials)
    timed_load(small, config)
    print(f"initial load, median of {len(initials)}: {init_s:.1f}s")
    days = []
    for n in range(1, args.days + 1):
        simulator.advance(big.source, 1)
        settle(base)
        seconds, rows = timed_load(big, config)
        days.append({"seconds": seconds, "rows": rows})
        print(f"one-day increment, day {n}: {rows:,} rows in {seconds:.2f}s = "
              f"{seconds / init_s:.1%} of the initial load")
    day_s = statistics.median(d["seconds"] for d in days)
    day_rows = round(statistics.median(d["rows"] for d in days))
    print(f"one-day increment, median of {len(days)} days: {day_s:.2f}s = "
          f"{day_s / init_s:.1%} of the initial load")
    scaling = []
    for label, s, n in (("large", big, 1_000), ("large", big, 10_000), ("large", big, 100_000),
                        ("small", small, 10_000)):
        touch_orders(s, n)
        seconds, rows = timed_load(s, config)
        orders = simulator.counts(s.source)["orders"]
        scaling.append({"source": label, "orders_in_table": orders, "changed": n,
                        "rows_extracted": rows, "seconds": seconds})
        print(f"  {label:<6} orders table {orders:>9,} rows, {n:>7,} changed: "
              f"{rows:>7,} extracted in {seconds:.2f}s")
    out = {"scale": args.scale, "initial_seconds": init_s, "initials": initials,
           "initial_rows": init_rows,
           "day_seconds": day_s, "day_rows": day_rows, "days": days, "scaling": scaling}
    (ROOT / "docs" / "increment_cost.json").write_text(json.dumps(out, indent=2))
    for s in (big, small):  # the bench databases go; the numbers are in the JSON
        for endpoint in (s.source, s.warehouse):
            settle(base, drop=endpoint.database)


if __name__ == "__main__":
    main()
