"""What elementary costs: `elt run` for a one-day increment, this checkout against another
(the project before elementary), side by side on copies of the same source.

    python benchmarks/elementary_cost.py [--before DIR] [--scale 1] [--json PATH]

DIR is a checkout of the project before this change (`git archive <commit> | tar -x -C DIR`).
On the running embedded server (ELT_PG_PORT) it builds `bench_src` at --scale once, then for
each checkout: a copy of it as the source, an empty warehouse, `elt run` (the initial load
and build, not compared), one simulated day, and `elt run` again, timed. Both increments
start from identical data (the simulator is deterministic per seed). It prints the seconds
per task of each increment and elementary's share of the new one: the `edr report` inside the
report task, and elementary's models, monitors and hooks inside `dbt build` (dbt's
run_results.json). One run each: on a shared machine expect 10-30 % between runs. Without
--before only this checkout is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import admin_exec, endpoint, recreate  # noqa: E402
from loader.db import connect_raw  # noqa: E402
from loader.source import simulator  # noqa: E402

SOURCE = "bench_elementary_src"


def elt(tree: Path, env: dict[str, str], *args: str) -> float:
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "loader.cli", *args], cwd=tree,
                          env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"elt {' '.join(args)} in {tree} exited {done.returncode}:\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - t0


def task_seconds(database: str) -> dict[str, float]:
    conn = connect_raw(endpoint(database))
    try:
        with conn.cursor() as cur:
            cur.execute("select task, sum(duration_s) from ops.task_runs where run_id = "
                        "(select run_id from ops.pipeline_runs order by started_at desc limit 1)"
                        " group by task")
            return {task: round(float(s), 1) for task, s in cur.fetchall()}
    finally:
        conn.close()


def elementary_in_build(target: Path) -> dict[str, float]:
    """Seconds of elementary's nodes in the last `dbt build` (run_results.json): its models,
    its monitors (tests tagged elementary-tests) and its on-run-end hook."""
    results = json.loads((target / "run_results.json").read_text())["results"]
    share = {"models": 0.0, "monitors": 0.0, "hooks": 0.0}
    for r in results:
        uid = r["unique_id"]
        if uid.startswith("model.elementary."):
            share["models"] += r["execution_time"]
        elif uid.startswith("test.") and ".elementary_" in uid:
            share["monitors"] += r["execution_time"]
        elif uid.startswith("operation.elementary"):
            share["hooks"] += r["execution_time"]
    return {k: round(v, 1) for k, v in share.items()}


def one_checkout(tree: Path, label: str, work: Path) -> dict:
    src, wh = f"bench_elementary_{label}_src", f"bench_elementary_{label}_wh"
    recreate(src, template=SOURCE)
    recreate(wh)
    base = endpoint(wh)
    env = {
        "ELT_ENV": "dev",
        "ELT_HOME": str(work / label),
        "ELT_SOURCE_URL": endpoint(src).display,
        "ELT_WAREHOUSE_URL": base.display,
        "ELT_REPORTS_DIR": str(work / label / "reports"),
        "DBT_TARGET_PATH": str(work / label / "target"),
        "DBT_LOG_PATH": str(work / label / "logs"),
    }
    first = elt(tree, env, "run")
    advance = elt(tree, env, "source", "advance", "--days", "1")
    increment = elt(tree, env, "run")
    out = {"initial_run_s": round(first, 1), "advance_s": round(advance, 1),
           "increment_run_s": round(increment, 1), "tasks": task_seconds(wh)}
    if (work / label / "reports" / "quality.json").exists():
        report = json.loads((work / label / "reports" / "quality.json").read_text())
        out["edr_report_s"] = report.get("timings", {}).get("edr_report")
    if (work / label / "target" / "run_results.json").exists():
        out["elementary_in_dbt_build_s"] = elementary_in_build(work / label / "target")
    for database in (src, wh):
        admin_exec(f'drop database if exists "{database}" with (force)')
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    recreate(SOURCE)
    t0 = time.monotonic()
    simulator.init(endpoint(SOURCE), simulator.SimConfig(scale=args.scale, seed=5))
    print(f"source at scale {args.scale} built in {time.monotonic() - t0:.0f}s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-elementary-"))
    result = {"scale": args.scale, "load_average": os.getloadavg()[0]}
    trees = [("before", args.before.resolve())] if args.before else []
    for label, tree in [*trees, ("after", ROOT)]:
        result[label] = one_checkout(tree, label, work)
        print(label, json.dumps(result[label]), flush=True)
    if args.before:
        ratio = result["after"]["increment_run_s"] / result["before"]["increment_run_s"]
        result["increment_ratio"] = round(ratio, 2)
        print(f"one-day increment: {result['before']['increment_run_s']}s before, "
              f"{result['after']['increment_run_s']}s with elementary ({ratio:.2f}x)")
    admin_exec(f'drop database if exists "{SOURCE}" with (force)')
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
