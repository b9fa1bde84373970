"""Initial-load throughput: the COPY pipe, dlt's configurations, and this loader.

Every method runs in its own child process (peak RSS is the child's own) against the same
embedded server, in one run, so the ratios compare like with like. Usage:

    python benchmarks/load_throughput.py [--scale 1] [--defaults-table orders]
                                         [--matrix-table orders]

Three groups, each with the COPY pipe as its baseline: all six tables (the loader vs dlt's
best configuration); dlt's arrow backends x file formats on --matrix-table; dlt's sqlalchemy
backend (its default, with insert_values, csv and parquet) on --defaults-table, which is
slow and so measured on one table only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loader import warehouse  # noqa: E402
from loader.config import load_settings  # noqa: E402
from loader.db import connect_raw  # noqa: E402
from loader.source import simulator  # noqa: E402

TABLES = simulator.TABLES
SRC = "bench_src"


def endpoints(name: str):
    settings = load_settings()
    return settings, settings.warehouse.with_database(name)


def recreate(settings, name: str) -> None:
    conn = connect_raw(settings.warehouse.with_database("postgres"), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')
        cur.execute(f'create database "{name}"')
    conn.close()


def settle(settings, drop: str | None = None) -> None:
    """Leave no background work to the next method: drop its target, vacuum, checkpoint."""
    conn = connect_raw(settings.warehouse.with_database("postgres"), autocommit=True)
    with conn.cursor() as cur:
        if drop:
            cur.execute(f'drop database if exists "{drop}" with (force)')
        cur.execute("checkpoint")
    conn.close()


def copy_pipe(
    settings, tables: list[str], target: str, source: str = SRC, schema: str = "marketplace"
) -> int:
    """COPY TO STDOUT piped into COPY FROM STDIN, one thread per table (binary format), from
    `schema` of the database `source`."""
    src_ep = settings.warehouse.with_database(source)
    dst_ep = settings.warehouse.with_database(target)
    conn = connect_raw(dst_ep, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("create schema raw")
    conn.close()
    # the same DDL as the source: plain tables, no indexes (as dlt creates them)
    src = connect_raw(src_ep)
    ddl = []
    with src.cursor() as cur:
        for t in tables:
            cur.execute(
                """select string_agg(format('%%I %%s', column_name,
                   format_type(atttypid, atttypmod)), ', ' order by attnum)
                   from pg_attribute a join information_schema.columns c
                     on c.table_schema = %s and c.table_name = %s
                    and c.column_name = a.attname
                   where attrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass
                     and attnum > 0 and not attisdropped""",
                (schema, t, schema, t),
            )
            ddl.append(f"create table raw.{t} ({cur.fetchone()[0]})")
    src.close()
    conn = connect_raw(dst_ep, autocommit=True)
    with conn.cursor() as cur:
        for statement in ddl:
            cur.execute(statement)
    conn.close()
    counts = {}

    def one(table: str) -> None:
        r, w = os.pipe()
        s = connect_raw(src_ep)
        d = connect_raw(dst_ep)

        def produce():
            with os.fdopen(w, "wb") as out, s.cursor() as cur:
                cur.copy_expert(f"copy {schema}.{table} to stdout (format binary)", out)

        producer = threading.Thread(target=produce)
        producer.start()
        with os.fdopen(r, "rb") as inp, d.cursor() as cur:
            cur.copy_expert(f"copy raw.{table} from stdin (format binary)", inp)
            counts[table] = cur.rowcount
        d.commit()
        producer.join()
        s.close()
        d.close()

    threads = [threading.Thread(target=one, args=(t,)) for t in tables]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts.values())


def dlt_sql_database(settings, tables: list[str], target: str, backend: str, fmt: str) -> int:
    import dlt
    from dlt.sources.sql_database import sql_database

    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    src_ep = settings.warehouse.with_database(SRC)
    kwargs = {}
    if backend == "connectorx":
        kwargs["backend_kwargs"] = {"conn": src_ep.dsn.replace("postgres:@", "postgres@")}
    source = sql_database(
        credentials=src_ep.sqlalchemy_url,
        schema="marketplace",
        table_names=tables,
        backend=backend,
        **kwargs,
    )
    if backend != "sqlalchemy":
        source = source.parallelize()
    # no state or pending package of an earlier run may leak into this one
    shutil.rmtree(settings.dlt_dir / "bench" / f"bench_{target}", ignore_errors=True)
    pipeline = dlt.pipeline(
        f"bench_{target}",
        destination=dlt.destinations.postgres(
            credentials=settings.warehouse.with_database(target).dsn
        ),
        dataset_name="raw",
        pipelines_dir=str(settings.dlt_dir / "bench"),
    )
    pipeline.run(
        source, write_disposition="replace", loader_file_format=None if fmt == "default" else fmt
    )
    # rows that reached the target (normalize's row_counts over-count some csv writers)
    conn = connect_raw(settings.warehouse.with_database(target))
    with conn.cursor() as cur:
        cur.execute(" union all ".join(f"select count(*) from raw.{t}" for t in tables))
        rows = sum(n for (n,) in cur.fetchall())
    conn.close()
    return rows


def this_loader(settings, tables: list[str], target: str) -> int:
    from dataclasses import replace

    from loader.extract.pipeline import run_load
    from loader.extract.plan import LoadRequest
    from loader.extract.tables import load_config

    s = replace(
        settings,
        source=settings.warehouse.with_database(SRC),
        warehouse=settings.warehouse.with_database(target),
        home=settings.home / "bench" / target,
    )
    shutil.rmtree(s.home, ignore_errors=True)  # no state of an earlier run
    result = run_load(s, load_config(s.tables_config), LoadRequest(tables))
    return result.rows_extracted


def child(method: str, tables: list[str], target: str) -> None:
    settings, _ = endpoints(target)
    recreate(settings, target)
    # every method is timed from its call, after the imports it needs (dlt's take about a
    # second; the COPY pipe needs none): the clock measures loading, not Python start-up
    if method == "this_loader":
        import loader.extract.pipeline  # noqa: F401
    elif method.startswith("dlt"):
        import dlt.sources.sql_database  # noqa: F401
    t0 = time.perf_counter()
    if method == "copy_pipe":
        rows = copy_pipe(settings, tables, target)
    elif method == "this_loader":
        rows = this_loader(settings, tables, target)
    elif method == "this_loader_increment":
        rows = -1
    else:
        backend, fmt = method.split(":")[1:]
        rows = dlt_sql_database(settings, tables, target, backend, fmt)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_mb": peak_mb}))


def run_child(settings, method: str, tables: list[str]) -> dict:
    target = "bench_" + method.replace(":", "_").replace("-", "_")
    settle(settings)
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            method,
            "--target",
            target,
            "--tables",
            ",".join(tables),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{method} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["rows_per_s"] = result["rows"] / result["seconds"]
    settle(settings, drop=target)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--defaults-table",
        default="orders",
        help="dlt defaults are slow: measured on this table only",
    )
    parser.add_argument(
        "--matrix-table",
        default="orders",
        help="dlt's arrow backends x file formats are measured on this table ('none': skip)",
    )
    parser.add_argument("--child")
    parser.add_argument("--target")
    parser.add_argument("--tables")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tables.split(","), args.target)
        return
    settings = load_settings()
    warehouse.ensure_running(settings)
    recreate(settings, SRC)
    src = settings.warehouse.with_database(SRC)
    t0 = time.perf_counter()
    simulator.init(src, simulator.SimConfig(scale=args.scale, seed=1))
    init_s = time.perf_counter() - t0
    rows = simulator.counts(src)
    conn = connect_raw(src, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("vacuum analyze")  # hint bits and statistics, before anyone reads
    conn.close()
    print(f"source at scale {args.scale:g}: {sum(rows.values()):,} rows built in {init_s:.1f}s")
    all_tables = list(TABLES)
    plans = [
        ("copy_pipe", all_tables),
        ("this_loader", all_tables),
        ("dlt:connectorx:parquet", all_tables),
    ]
    if args.matrix_table != "none":
        plans += [(m, [args.matrix_table]) for m in (
            "copy_pipe", "this_loader", "dlt:connectorx:parquet", "dlt:connectorx:csv",
            "dlt:pyarrow:parquet", "dlt:pyarrow:csv")]
    plans += [(m, [args.defaults_table]) for m in (
        "copy_pipe", "dlt:sqlalchemy:default", "dlt:sqlalchemy:csv", "dlt:sqlalchemy:parquet",
        "this_loader")]
    plans = [p for n, p in enumerate(plans) if p not in plans[:n]]  # matrix = defaults table
    results = []
    for method, tables in plans:
        r = run_child(settings, method, tables)
        r.update(method=method, tables="all" if tables == all_tables else ",".join(tables))
        results.append(r)
        print(
            f"  {method:<26} {r['tables']:<8} {r['rows']:>10,} rows {r['seconds']:7.1f}s "
            f"{r['rows_per_s']:>10,.0f} rows/s  peak {r['peak_mb']:.0f} MB",
            flush=True,
        )
    base: dict[str, float] = {}
    for res in results:
        if res["method"] == "copy_pipe":
            base.setdefault(res["tables"], res["rows_per_s"])
    print("\nratio to the COPY pipe on the same tables (same run):")
    for res in results:
        ratio = res["rows_per_s"] / base[res["tables"]]
        print(f"  {res['method']:<26} {res['tables']:<8} {ratio:.2f}")
    out = {
        "scale": args.scale,
        "source_init_seconds": init_s,
        "source_rows": rows,
        "results": results,
    }
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "load_throughput.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
