"""No silent loss, checked from outside: rounds of simulated days and `elt run`, nothing else;
after every run, raw equals the source and the marts equal an oracle built from the source.

    python benchmarks/no_silent_loss.py [--scale 0.1] [--rounds 3] [--days 10]

On a private source and warehouse (bench_nsl_* databases of the running embedded server):
`elt run` builds the source and loads it, then each round advances the source by --days and
runs `elt run` again, exactly as a user would. After each run:
- raw = source: every table's key set and every row's values (md5 of the row's text over the
  source's columns) are read from both databases and compared in Python; this reads none of
  the loader's own reconciliation code;
- marts = oracle: a second warehouse is loaded whole from the source (`elt load
  --full-refresh`, one snapshot) and built with `dbt build --full-refresh`; daily_revenue and
  monthly_active_users (and every other mart) must be equal, EXCEPT both ways.
Prints a line per check and writes benchmarks/results/no_silent_loss.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness  # noqa: E402
from loader.db import connect_raw  # noqa: E402
from loader.extract.tables import load_config  # noqa: E402

MARTS = ("daily_revenue", "monthly_active_users", "fct_orders", "fct_order_items",
         "fct_payments", "fct_bids", "dim_customers", "dim_products")
# when the loader and the build wrote a row: bookkeeping, not data
BOOKKEEPING = ("_validated_at", "_loaded_at")


def _settings(name: str, src: str, wh: str):
    s = harness.bench_settings(name, src, wh)
    quality = replace(s.quality, reports_dir=s.home / "reports", slack_webhook_url="",
                      webhook_url="", smtp_host="")
    return replace(s, quality=quality, external_source=True, external_warehouse=True)


def _rows(endpoint, schema: str, table: str, key: str, columns: list[str]) -> dict:
    cols = ", ".join(f'"{c}"' for c in columns)
    conn = connect_raw(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute(f'select "{key}", md5(row({cols})::text) from "{schema}"."{table}"')
            return dict(cur.fetchall())
    finally:
        conn.close()


def raw_equals_source(s, config) -> list[str]:
    """Differences between raw and the source, table by table (empty: equal)."""
    problems = []
    for spec in config.tables.values():
        conn = connect_raw(s.source)
        with conn.cursor() as cur:
            cur.execute("select column_name from information_schema.columns where "
                        "table_schema = %s and table_name = %s order by ordinal_position",
                        (config.source_schema, spec.name))
            columns = [r[0] for r in cur.fetchall()]
        conn.close()
        key = spec.primary_key[0]
        source = _rows(s.source, config.source_schema, spec.name, key, columns)
        raw = _rows(s.warehouse, config.dataset, spec.name, key, columns)
        missing, extra = source.keys() - raw.keys(), raw.keys() - source.keys()
        stale = [k for k in source.keys() & raw.keys() if source[k] != raw[k]]
        if missing or extra or stale:
            problems.append(f"{spec.name}: {len(missing)} missing, {len(extra)} extra, "
                            f"{len(stale)} with other values (e.g. {(stale or [None])[0]})")
    return problems


def _mart_sets(endpoint) -> dict[str, set]:
    conn = connect_raw(endpoint)
    out = {}
    try:
        with conn.cursor() as cur:
            for mart in MARTS:
                drop = " - ".join(f"'{c}'" for c in BOOKKEEPING)
                cur.execute(f"select (to_jsonb(m) - {drop})::text from dev_marts.{mart} m")
                out[mart] = {r[0] for r in cur.fetchall()}
    finally:
        conn.close()
    return out


def marts_equal_oracle(s, oracle) -> list[str]:
    """Build the oracle from the source (whole load, full-refresh build), compare marts."""
    from loader.extract.pipeline import run_load
    from loader.extract.plan import LoadRequest
    from loader.orchestrate.dbt import run_dbt

    config = load_config(s.tables_config)
    run_load(oracle, config, LoadRequest(full_refresh=True))
    run_dbt(oracle, "build", "--full-refresh", "--exclude", "resource_type:test")
    # a build without its tests does not publish (macros/publish.sql): publish it by hand
    run_dbt(oracle, "run-operation", "publish_marts")
    ours, truth = _mart_sets(s.warehouse), _mart_sets(oracle.warehouse)
    return [
        f"{mart}: {len(ours[mart] - truth[mart])} rows only in the pipeline's, "
        f"{len(truth[mart] - ours[mart])} only in the oracle's"
        for mart in MARTS
        if ours[mart] != truth[mart]
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--days", type=int, default=10)
    args = parser.parse_args()
    for db in ("bench_nsl_src", "bench_nsl_wh", "bench_nsl_oracle"):
        harness.recreate(db)
    s = _settings("nsl", "bench_nsl_src", "bench_nsl_wh")
    oracle = _settings("nsl_oracle", "bench_nsl_src", "bench_nsl_oracle")
    # dbt's artifacts go to a private folder, not into the project others work in
    os.environ["DBT_TARGET_PATH"] = str(s.home / "dbt-target")
    os.environ["DBT_LOG_PATH"] = str(s.home / "dbt-logs")
    from loader.orchestrate.job import RunOptions, run_job

    config = load_config(s.tables_config)
    results = []
    for n in range(args.rounds + 1):
        days = 0 if n == 0 else args.days
        t0 = time.monotonic()
        code = run_job(s, RunOptions(simulate_days=days, scale=args.scale), echo=lambda _: None)
        seconds = time.monotonic() - t0
        raw = raw_equals_source(s, config)
        marts = marts_equal_oracle(s, oracle)
        ok = code == 0 and not raw and not marts
        results.append({"round": n, "days": days, "exit": code, "seconds": round(seconds, 1),
                        "raw_vs_source": raw or "equal", "marts_vs_oracle": marts or "equal"})
        print(f"round {n} (+{days} days): elt run exit {code} in {seconds:.0f}s; raw vs source: "
              f"{'; '.join(raw) or 'equal'}; marts vs oracle: {'; '.join(marts) or 'equal'}"
              f" -> {'OK' if ok else 'FAILED'}", flush=True)
    out = harness.RESULTS / "no_silent_loss.json"
    out.write_text(json.dumps({"scale": args.scale, "rounds": results}, indent=2) + "\n")
    return 0 if all(r["exit"] == 0 and r["raw_vs_source"] == "equal"
                    and r["marts_vs_oracle"] == "equal" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
