"""Items 6 and 7: `elt run` initial and one-day increment; dbt full refresh vs incremental.

    python benchmarks/end_to_end.py [--scale 1]

The source is a copy (CREATE DATABASE ... TEMPLATE) of `bench_src` at --scale, so its build
is not timed; the warehouse is an empty bench database; ELT_HOME, dbt's target and the
quality report go to a private directory. Then, each in its own process:
7a. `elt run` (run_job): load, dbt build, freshness, quality report, on the fresh warehouse;
7b. one simulated day (`elt source advance --days 1`, timed apart), then `elt run` again;
6.  one more simulated day, loaded, then the incremental layer (`tag:incremental`) built
    incrementally and then with --full-refresh on the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness  # noqa: E402
from loader.source import simulator  # noqa: E402

SRC, WH = "bench_e2e_src", "bench_e2e_wh"


def _settings():
    s = harness.bench_settings("e2e", SRC, WH)
    quality = replace(s.quality, reports_dir=s.home / "reports", slack_webhook_url="",
                      webhook_url="", smtp_host="")
    # dbt writes its target and logs here, not into the project others work in
    os.environ["DBT_TARGET_PATH"] = str(s.home / "dbt-target")
    os.environ["DBT_LOG_PATH"] = str(s.home / "dbt-logs")
    # the server is the running embedded one, whose data is not under this private home:
    # treat it as external so that run_job does not try to start a server of its own
    return replace(s, quality=quality, external_source=True, external_warehouse=True)


def _task_seconds(settings) -> dict[str, float]:
    """Seconds per task of the last run, from the runner's history (ops.task_runs)."""
    from loader.db import Session

    with Session(settings.warehouse, "reading the run history") as session:
        found = {task: (s, rows) for task, s, rows in session.query(
            "select task, sum(duration_s), sum(rows) filter (where status = 'success') "
            "from ops.task_runs where run_id = "
            "(select run_id from ops.pipeline_runs order by started_at desc limit 1) "
            "group by task")}
    waves = [v for k, v in found.items() if k.startswith("load_wave")]
    out = {k: round(s, 2) for k, (s, _) in found.items() if not k.startswith("load_wave")}
    return {"load": round(sum(s for s, _ in waves), 2), **out,
            "rows_loaded": int(sum(r or 0 for _, r in waves))}


def elt_run(scale: float, advance_days: int = 0, label: str = "") -> dict:
    from loader.orchestrate.job import RunOptions, run_job

    settings = _settings()
    advance_s = 0.0
    if advance_days:
        t0 = time.perf_counter()
        simulator.advance(settings.source, advance_days)
        advance_s = time.perf_counter() - t0
    lines: list[str] = []
    with open(os.devnull, "w") as quiet:
        t0 = time.perf_counter()
        code = run_job(settings, RunOptions(scale=scale), echo=lines.append, stream=quiet)
        seconds = time.perf_counter() - t0
    if code != 0:
        raise SystemExit("elt run failed:\n" + "\n".join(lines))
    tasks = _task_seconds(settings)
    return {"label": label, "seconds": seconds, "advance_seconds": advance_s,
            "rows": tasks.pop("rows_loaded"), "tasks": tasks, "summary": lines[:12]}


def _fact_seconds(settings) -> dict[str, float]:
    path = Path(os.environ["DBT_TARGET_PATH"]) / "run_results.json"
    results = json.loads(path.read_text())["results"]
    return {r["unique_id"].split(".")[-1]: round(r["execution_time"], 2) for r in results}


def dbt_facts(full_refresh: bool, label: str = "") -> dict:
    """The four incremental facts, after a new simulated day loaded (set-up, not timed)."""
    from loader.extract.pipeline import run_load
    from loader.extract.tables import load_config
    from loader.orchestrate.dbt import run_dbt

    settings = _settings()
    rows = None
    if not full_refresh:
        simulator.advance(settings.source, 1)
        rows = run_load(settings, load_config(settings.tables_config)).rows_extracted
    # the lookback `elt run` uses: under its lock every load has committed before dbt runs
    # the incremental layer, and the clean views over it (a full refresh replaces the tables
    # and drops the views on them, which the facts read)
    cleaned = [f"int_{t}_cleaned" for t in ("orders", "order_items", "payments", "bids")]
    args = ["run", "--select", "tag:incremental", *cleaned,
            "--vars", '{"incremental_lookback": "0 seconds"}']
    args += ["--full-refresh"] if full_refresh else []
    t0 = time.perf_counter()
    run_dbt(settings, *args)
    seconds = time.perf_counter() - t0
    return {"label": label, "seconds": seconds, "rows_loaded_before": rows,
            "models": _fact_seconds(settings)}


def run(scale: float) -> dict:
    counts = harness.ensure_source(scale)
    harness.recreate(SRC, template=harness.SOURCE_DB)
    harness.recreate(WH)
    shutil.rmtree(harness.settings().home / "bench" / "e2e", ignore_errors=True)
    case = "benchmarks.end_to_end:"
    print(f"\n[7] elt run on a scale-{scale:g} source ({sum(counts.values()):,} rows)")
    initial = harness.run_case(case + "elt_run", {"scale": scale, "label": "elt run, initial"})
    increment = harness.run_case(case + "elt_run", {"scale": scale, "advance_days": 1,
                                                    "label": "elt run, one-day increment"})
    for r in (initial, increment):
        print(f"      tasks: {r['tasks']}")
    print(f"    one-day increment / initial = {increment['seconds'] / initial['seconds']:.1%} "
          f"(the day itself was simulated in {increment['advance_seconds']:.1f}s, not counted)")
    print("\n[6] dbt: the incremental facts after one more simulated day")
    incremental = harness.run_case(case + "dbt_facts",
                                   {"full_refresh": False, "label": "dbt run, incremental"})
    full = harness.run_case(case + "dbt_facts",
                            {"full_refresh": True, "label": "dbt run, --full-refresh"})
    for r in (incremental, full):
        print(f"      models: {r['models']}")
    print(f"    incremental / full refresh = {incremental['seconds'] / full['seconds']:.2f}")
    harness.settle(WH)
    harness.settle(SRC)
    out = {"scale": scale, "source_rows": counts, "initial": initial, "increment": increment,
           "dbt_incremental": incremental, "dbt_full_refresh": full,
           "dbt_incremental_lookback": "0 seconds"}
    harness.save("end_to_end", out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    run(parser.parse_args().scale)
