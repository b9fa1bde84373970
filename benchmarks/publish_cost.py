"""What write-audit-publish costs a one-day `elt run`: this tree (two copies of the marts,
published at the end of each build) against the project as it was before it (one copy,
`marts` written in place), on copies of one scale-S source.

    python benchmarks/publish_cost.py [--scale 1] [--days 3] [--baseline REV]

The baseline runs from a `git archive` of REV (default: the parent of the commit that added
macros/publish.sql) in a temporary directory. Each variant gets its own copy of bench_src
(CREATE DATABASE ... TEMPLATE) and an empty warehouse, then an initial `elt run` and a
warm-up day, not timed (after them, the variant with publishing is in its steady state: both
copies built, each build incremental). Then `--days` rounds: one simulated day on each
source (not timed) and a timed `elt run` of each, in turns (which goes first alternates).
Every `elt run` is a process of its own, with the variant's tree first on sys.path; the
times are its `run_job` call, tasks from its history (ops.task_runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness  # noqa: E402
from loader.db import connect_raw  # noqa: E402
from loader.source import simulator  # noqa: E402

ROOT = harness.ROOT
VARIANTS = ("without", "with")  # publishing
ELT_RUN = """
import json, os, time
from loader.config import load_settings
from loader.orchestrate.job import RunOptions, run_job
settings = load_settings()
with open(os.devnull, "w") as quiet:
    t0 = time.perf_counter()
    code = run_job(settings, RunOptions(scale={scale}), echo=lambda _: None, stream=quiet)
    print(json.dumps({{"code": int(code), "seconds": time.perf_counter() - t0}}))
"""


def default_baseline() -> str:
    """The parent of the commit that added macros/publish.sql."""
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "macros/publish.sql"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    if not added:
        raise SystemExit("macros/publish.sql is not committed yet: pass --baseline REV")
    return f"{added[-1]}^"


def checkout(rev: str) -> Path:
    """REV's tree in a temporary directory."""
    where = Path(tempfile.mkdtemp(prefix="elt-baseline-"))
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where


def databases(variant: str) -> tuple[str, str]:
    return f"bench_pub_{variant}_src", f"bench_pub_{variant}_wh"


def environment(variant: str, home: Path) -> dict[str, str]:
    source, target = databases(variant)
    base = harness.settings().warehouse
    url = f"postgresql://{base.user}@{base.host}:{base.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_ALERT_", "DBT_"))}
    return {
        **env,
        "ELT_HOME": str(home),
        "ELT_SOURCE_URL": f"{url}/{source}",  # both external: the run starts no server
        "ELT_WAREHOUSE_URL": f"{url}/{target}",
        "ELT_REPORTS_DIR": str(home / "reports"),
        "ELT_DEEP_RECONCILE_EVERY": "0",  # no checksum comparison of every table on a day
        "DBT_TARGET_PATH": str(home / "target"),
        "DBT_LOG_PATH": str(home / "logs"),
    }


def elt_run(tree: Path, env: dict[str, str], scale: float) -> float:
    harness.settle()
    out = subprocess.run([sys.executable, "-c", ELT_RUN.format(scale=scale)], cwd=tree,
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"elt run in {tree} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        raise SystemExit(f"elt run in {tree} exited {result['code']}: see {env['ELT_HOME']}")
    return result["seconds"]


def task_seconds(variant: str) -> dict[str, float]:
    """Seconds per task of the variant's last run (`load` sums the waves)."""
    conn = connect_raw(harness.endpoint(databases(variant)[1]))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select task, sum(duration_s) from ops.task_runs where run_id = (select run_id "
                "from ops.pipeline_runs order by started_at desc limit 1) group by task")
            found = dict(cur.fetchall())
    finally:
        conn.close()
    load = sum(v for k, v in found.items() if k.startswith("load_wave"))
    return {"load": round(load, 2),
            **{k: round(v, 2) for k, v in found.items() if not k.startswith("load_wave")}}


def build_seconds(home: Path, publishing: bool) -> dict[str, float]:
    """From the build's run_results.json: the incremental facts, and the on-run-end hook that
    publishes (the second one, finish_marts_build)."""
    results = json.loads((home / "target" / "run_results.json").read_text())["results"]
    times = {r["unique_id"]: r["execution_time"] for r in results}
    out = {
        "facts": round(sum(v for k, v in times.items()
                           if k.startswith("model.marketplace.fct_")), 2),
        "fact_tests": round(sum(v for k, v in times.items()
                                if k.startswith("test.") and "fct_" in k), 2),
        "models": round(sum(v for k, v in times.items() if k.startswith("model.")), 2),
        "tests": round(sum(v for k, v in times.items() if k.startswith("test.")), 2),
    }
    hook = [v for k, v in times.items() if k.endswith("on-run-end-1")]
    if hook and publishing:
        out["publish_hook"] = round(hook[0], 3)
    return out


def run(scale: float, days: int, baseline: str | None) -> dict:
    counts = harness.ensure_source(scale)
    rev = baseline or default_baseline()
    trees = {"without": checkout(rev), "with": ROOT}
    homes = {v: harness.settings().home / "bench" / f"publish_{v}" for v in VARIANTS}
    envs = {v: environment(v, homes[v]) for v in VARIANTS}
    try:
        for v in VARIANTS:
            source, target = databases(v)
            harness.recreate(source, template=harness.SOURCE_DB)
            harness.recreate(target)
            shutil.rmtree(homes[v], ignore_errors=True)
        print(f"\n[publish] one-day `elt run` with and without publishing, scale {scale:g} "
              f"({sum(counts.values()):,} rows); without = {rev}")
        setup: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for warm_up in (0, 1):
            for v in VARIANTS:
                if warm_up:
                    simulator.advance(harness.endpoint(databases(v)[0]), 1)
                setup[v].append(elt_run(trees[v], envs[v], scale))
                print(f"    {'warm-up day' if warm_up else 'initial run'} {v:>7} publishing: "
                      f"{setup[v][-1]:6.1f}s", flush=True)
        rounds: list[dict] = []
        load_average = [os.getloadavg()[0]]
        for n in range(days):
            order = VARIANTS if n % 2 == 0 else VARIANTS[::-1]
            for v in order:
                simulator.advance(harness.endpoint(databases(v)[0]), 1)
                seconds = elt_run(trees[v], envs[v], scale)
                rounds.append({"day": n + 1, "variant": v, "seconds": seconds,
                               "tasks": task_seconds(v), **build_seconds(homes[v], v == "with")})
                print(f"    day {n + 1} {v:>7} publishing: {seconds:6.1f}s  "
                      f"{rounds[-1]['tasks']}", flush=True)
            load_average.append(os.getloadavg()[0])
        median = {v: statistics.median(r["seconds"] for r in rounds if r["variant"] == v)
                  for v in VARIANTS}
        print(f"    median one-day elt run: {median['with']:.1f}s with publishing, "
              f"{median['without']:.1f}s without: +{median['with'] / median['without'] - 1:.1%}")
    finally:
        if trees["without"] != ROOT:
            shutil.rmtree(trees["without"], ignore_errors=True)
        for v in VARIANTS:
            for name in databases(v):
                harness.settle(name)
    out = {"scale": scale, "baseline": rev, "source_rows": counts, "setup": setup,
           "rounds": rounds, "median": median, "load_average": load_average,
           "machine": harness.machine()}
    harness.save("publish_cost", out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--baseline", help="git revision without publishing")
    args = parser.parse_args()
    from loader import warehouse

    warehouse.ensure_running(harness.settings())
    run(args.scale, args.days, args.baseline)
