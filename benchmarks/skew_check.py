"""The cost of "no silent loss" in timestamp mode, at two table sizes.

    python benchmarks/skew_check.py [--scale 1]

1. The count scan of an increment, alone (as before) and with the search for rows written
   behind the window (by xmin, queries.count_statement): median of 5, alternating, per
   timestamp table, on a source at --scale and one at a tenth of it;
2. one-day loader increments with N rows written 3 days behind the watermark (N = 0, 100,
   10,000) on both sources: what the catch-up costs as the behind-the-window rows grow.
Writes benchmarks/results/skew_check.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness  # noqa: E402
from loader.db import connect_raw  # noqa: E402
from loader.extract.pipeline import make_pipeline, run_load  # noqa: E402
from loader.extract.queries import COUNT_SETTINGS, count_statement  # noqa: E402
from loader.extract.tables import load_config  # noqa: E402
from loader.source import simulator  # noqa: E402

TABLES = ("orders", "order_items", "payments")
BEHIND = (0, 100, 10_000)


def _source(scale: float):
    tag = str(scale).replace(".", "_")
    name = f"bench_skew_src_{tag}"
    s = harness.bench_settings(f"skew_{tag}", name, f"bench_skew_wh_{tag}")
    if not harness.database_exists(name):
        harness.recreate(name)
        simulator.init(s.source, simulator.SimConfig(scale=scale, seed=5))
    return s


def scan_costs(s) -> dict[str, dict]:
    """ms of the count scan alone and with the search, and rows, per table."""
    config = load_config(s.tables_config)
    out = {}
    conn = connect_raw(s.source)
    try:
        with conn.cursor() as cur:
            cur.execute("select pg_snapshot_xmin(pg_current_snapshot())::text")
            xmin = cur.fetchone()[0]
            conn.rollback()
            for table in TABLES:
                spec = config.tables[table]
                cur.execute(f"select (max(updated_at) - interval '15 minutes')::text, count(*) "
                            f"from marketplace.{table}")
                since, rows = cur.fetchone()
                state = {"since": since, "snapshot_xmin": xmin}
                with_search = count_statement(config, spec, "increment", state)
                alone = count_statement(config, spec, "initial", state)
                times: dict[str, list[float]] = {"alone": [], "with_search": []}
                for _ in range(5):
                    for label, (statement, params) in (("alone", alone),
                                                       ("with_search", with_search)):
                        cur.execute(COUNT_SETTINGS)
                        t0 = time.perf_counter()
                        cur.execute(statement, params)
                        cur.fetchone()
                        times[label].append((time.perf_counter() - t0) * 1000)
                        conn.rollback()
                a, w = statistics.median(times["alone"]), statistics.median(times["with_search"])
                out[table] = {"rows": rows, "alone_ms": round(a, 1), "with_search_ms": round(w, 1),
                              "added_ms_per_million": round((w - a) / rows * 1e6, 1)}
    finally:
        conn.close()
    return out


def _write_behind(s, n: int) -> None:
    conn = connect_raw(s.source)
    with conn, conn.cursor() as cur:
        cur.execute("update marketplace.orders set status = status, "
                    "updated_at = now() - interval '3 days' "
                    "where order_id in (select order_id from marketplace.orders "
                    "order by order_id limit %s)", (n,))
    conn.close()


def catch_up_costs(s) -> list[dict]:
    """A one-day increment with n rows written 3 days behind the watermark, per n. Every
    increment starts from a warehouse whose watermark is at the source's clock."""
    harness.recreate(s.warehouse.database)
    config = load_config(s.tables_config)
    run_load(s, config)
    out = []
    for n in BEHIND:
        simulator.advance(s.source, 1)
        _write_behind(s, n)
        harness.settle()
        t0 = time.perf_counter()
        result = run_load(s, config)
        seconds = time.perf_counter() - t0
        orders = result.tables["orders"]
        out.append({"behind": n, "seconds": round(seconds, 2),
                    "caught_up": orders.caught_up, "extracted": result.rows_extracted,
                    "reconciled": all(r.reconciled for r in result.tables.values())})
        # the table learned the skew: undo it, so the next n is found behind the window again
        with make_pipeline(s, config).managed_state() as state:
            for source in state["sources"].values():
                source["resources"]["orders"].pop("learned_lag_s", None)
    return out


def run(scale: float) -> dict:
    results = {}
    for size in (scale, round(scale / 10, 4)):
        s = _source(size)
        results[str(size)] = {"scans": scan_costs(s), "catch_up": catch_up_costs(s)}
        for table, r in results[str(size)]["scans"].items():
            print(f"scale {size} {table:<12} {r['rows']:>10,} rows: count {r['alone_ms']} ms, "
                  f"with the search {r['with_search_ms']} ms "
                  f"(+{r['added_ms_per_million']} ms per million rows)", flush=True)
        for r in results[str(size)]["catch_up"]:
            print(f"scale {size}: one-day increment with {r['behind']:>6} rows 3 days behind: "
                  f"{r['seconds']} s, {r['caught_up']} caught up, reconciled "
                  f"{r['reconciled']}", flush=True)
    harness.save("skew_check", {"scale": scale, "sizes": results})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    run(parser.parse_args().scale)


if __name__ == "__main__":
    main()
