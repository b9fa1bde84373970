"""Shared benchmark plumbing: bench databases, a settled server, one child process per case.

A case is a function `case(**kwargs) -> dict` in a benchmark module. `run_case` runs it in a
fresh Python process, so its peak RSS (`getrusage`, own and its children's) is its alone, then
drops the case's target database and checkpoints, so no background work leaks into the next.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loader.config import Endpoint, Settings, load_settings  # noqa: E402
from loader.db import connect_raw, execute  # noqa: E402
from loader.source import simulator  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DATA_DB = "bench_data"  # synthetic tables shared by the micro-benchmarks (items 1-3)
SOURCE_DB = "bench_src"  # the simulator's source, built by load_throughput.py

# nine columns of the usual types, like the simulator's orders table
ITEMS_DDL = """
    id          bigint,
    customer_id integer,
    status      text,
    amount      numeric(12, 2),
    quantity    integer,
    is_gift     boolean,
    ordered_at  timestamptz,
    ship_date   date,
    note        text
"""
ITEMS_COLUMNS = [line.split()[0] for line in ITEMS_DDL.strip().splitlines()]
ITEMS_SELECT = """
    select g::bigint, (g * 7919 % 100000)::int,
           (array['placed', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 5],
           round((g % 10000) / 7.0, 2)::numeric(12, 2), 1 + g % 9, g % 13 = 0,
           timestamptz '2024-01-01 00:00+00' + g * interval '17 seconds',
           date '2024-01-01' + (g % 700)::int,
           case when g % 4 = 0 then null else 'note for order ' || g end
    from generate_series({lo}::bigint, {hi}::bigint) as g
"""


def settings() -> Settings:
    return load_settings()


def endpoint(name: str) -> Endpoint:
    return settings().warehouse.with_database(name)


def admin_exec(*statements: str) -> None:
    execute(endpoint("postgres"), *statements)


def recreate(name: str, template: str | None = None) -> Endpoint:
    assert name.startswith("bench_"), name  # the only databases the suite may touch
    extra = f' template "{template}"' if template else ""
    admin_exec(f'drop database if exists "{name}" with (force)', f'create database "{name}"{extra}')
    return endpoint(name)


def database_exists(name: str) -> bool:
    conn = connect_raw(endpoint("postgres"), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def settle(drop: str | None = None) -> None:
    """Leave no background work to the next case: drop its target database, checkpoint."""
    if drop:
        assert drop.startswith("bench_"), drop
        admin_exec(f'drop database if exists "{drop}" with (force)', "checkpoint")
    else:
        admin_exec("checkpoint")


def bench_settings(name: str, source: str, target: str) -> Settings:
    """Settings whose source and warehouse are bench databases and whose home is private."""
    base = settings()
    return replace(
        base,
        source=base.warehouse.with_database(source),
        warehouse=base.warehouse.with_database(target),
        home=base.home / "bench" / name,
    )


def ensure_items(rows: int) -> str:
    """A synthetic table `items_<rows>` in bench_data (built once, vacuumed), returns its name."""
    if not database_exists(DATA_DB):
        recreate(DATA_DB)
    table = f"items_{rows}"
    conn = connect_raw(endpoint(DATA_DB), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass(%s) is not null", (table,))
            if not cur.fetchone()[0]:
                # one transaction: a failed build leaves no empty table behind
                cur.execute("begin")
                cur.execute(f"create table {table} ({ITEMS_DDL})")
                cur.execute(f"insert into {table} " + ITEMS_SELECT.format(lo=1, hi=rows))
                cur.execute("commit")
                cur.execute(f"vacuum analyze {table}")
    finally:
        conn.close()
    return table


def ensure_source(scale: float) -> dict[str, int]:
    """bench_src at `scale` (load_throughput.py builds it; reused when the scale matches)."""
    src = endpoint(SOURCE_DB)
    if (
        database_exists(SOURCE_DB)
        and simulator.is_initialised(src)
        and float(simulator.state(src).get("scale", -1)) == scale
    ):
        return simulator.counts(src)
    recreate(SOURCE_DB)
    simulator.init(src, simulator.SimConfig(scale=scale, seed=1))
    conn = connect_raw(src, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("vacuum analyze")
    conn.close()
    return simulator.counts(src)


def peak_rss_mb() -> float:
    """The larger of this process's and its waited-for children's maximum RSS, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def run_case(
    case: str, kwargs: dict | None = None, drop: str | None = None, quiet: bool = False
) -> dict:
    """Run `module:function(**kwargs)` in a child process; returns its result with peak RSS.

    The function returns a dict with `rows` and, when only part of it is timed, `seconds`;
    otherwise the whole call is timed. `drop` names the bench database to drop afterwards.
    """
    settle()
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, "--kwargs", json.dumps(kwargs or {})],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    settle(drop)
    if out.returncode != 0:
        raise SystemExit(f"{case} {kwargs} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result.get("rows") and result.get("seconds"):
        result["rows_per_s"] = result["rows"] / result["seconds"]
    if not quiet:
        print("    " + describe(result), flush=True)
    return result


def describe(r: dict) -> str:
    label = r.get("label", "")
    rate = f"{r['rows_per_s']:>11,.0f} rows/s" if r.get("rows_per_s") else " " * 18
    rows = f"{r['rows']:>10,} rows" if r.get("rows") is not None else " " * 15
    return f"{label:<40} {rows} {r['seconds']:8.2f}s {rate}  peak {r['peak_mb']:6.0f} MB"


def _child(case: str, kwargs: dict) -> None:
    module, function = case.split(":")
    fn = getattr(importlib.import_module(module), function)
    t0 = time.perf_counter()
    result = fn(**kwargs) or {}
    result.setdefault("seconds", time.perf_counter() - t0)
    result["peak_mb"] = peak_rss_mb()
    print(json.dumps(result, default=str))


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"measured_at": time.strftime("%Y-%m-%d %H:%M"), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    conn = connect_raw(endpoint("postgres"))
    try:
        with conn.cursor() as cur:
            cur.execute("show server_version")
            pg = cur.fetchone()[0]
    finally:
        conn.close()
    import dlt

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_gb),
        "python": platform.python_version(),
        "postgresql": pg,
        "dlt": dlt.__version__,
        "load_average": os.getloadavg()[0],
    }


def scaled(base: int, scale: float, floor: int = 1000) -> int:
    return max(floor, int(base * scale))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True)
    parser.add_argument("--kwargs", default="{}")
    args = parser.parse_args()
    _child(args.child, json.loads(args.kwargs))
