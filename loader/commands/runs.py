"""The commands of the whole job: `elt run`, `elt status`, `elt dag` and `elt report`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from loader.commands.shared import CliError, echo, flag, loader_config, number, progress
from loader.config import Settings
from loader.db import DatabaseUnavailable


def add_parsers(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="watermarks, last loads and reconciliation")
    flag(status, "--json", "print JSON")
    status.set_defaults(func=cmd_status)

    run = sub.add_parser("run", help="the whole job: warehouse, source, load, dbt")
    run.add_argument(
        "--simulate-days", type=int, default=0, help="advance the simulated source by N days first"
    )
    run.add_argument(
        "--scale",
        type=number,
        default=0.1,
        help="scale of the source built on a fresh ELT_HOME (default 0.1)",
    )
    flag(run, "--retry-failed",
         "rerun the tasks that failed (ops.failed_tasks) and what follows them")
    flag(run, "--full-tests", "run the dbt tests on every row (by default, after a successful "
         "build, the row-by-row tests check only the rows written since)")
    run.add_argument(
        "--deep-every",
        type=int,
        default=None,
        metavar="N",
        help="compare every table with the source by checksums (elt reconcile --deep) every "
        "N runs, this one included when due; 0: never (default ELT_DEEP_RECONCILE_EVERY, 7)",
    )
    run.set_defaults(func=cmd_run)

    dag = sub.add_parser("dag", help="draw the whole flow (source, raw, dbt) as a PNG")
    dag.add_argument("--output", default="dag.png", help="where to write it (default dag.png)")
    dag.set_defaults(func=cmd_dag)

    report = sub.add_parser(
        "report",
        help="elementary's report (reports/elementary.html, by edr report) and quality.json",
    )
    report.add_argument(
        "--output-dir", type=Path, default=None, help="where to write (default ELT_REPORTS_DIR)"
    )
    flag(report, "--alert", "send failures and anomalies to the ELT_ALERT_* channels")
    report.set_defaults(func=cmd_report)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.orchestrate.status import render, run_status

    st = warehouse.status(settings)
    if not st.running:
        raise DatabaseUnavailable(
            "the warehouse is not running: start it with `elt warehouse start`"
        )
    status = run_status(settings, loader_config(settings))
    if args.json:
        echo(json.dumps({"warehouse": st.__dict__, **status}, default=str))
        return 0
    for line in render(status):
        echo(line)
    return 0


def cmd_dag(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from loader import warehouse
    from loader.orchestrate.dbt import BUILD_VARS, run_dbt, target_path
    from loader.orchestrate.picture import draw
    from loader.orchestrate.tasks import source_foreign_keys, waves_for

    warehouse.ensure_running(settings)
    progress("parsing the dbt project for its lineage (dbt parse, up to a minute)")
    started = time.monotonic()
    # the lineage as the project stands now (the build's vars: its partial parse stays valid)
    run_dbt(settings, "parse", "--vars", BUILD_VARS)
    progress(f"parsed in {time.monotonic() - started:.0f} s; reading the source's foreign keys")
    config = loader_config(settings)
    waves, fks = waves_for(settings, config), source_foreign_keys(settings, config)
    progress(f"drawing {len(config.tables)} tables in {len(waves)} load waves and the dbt nodes")
    out = draw(waves, target_path() / "manifest.json", Path(args.output), fks)
    echo(f"wrote {out}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.orchestrate.history import RunLock

    if args.simulate_days < 0:
        raise CliError(f"--simulate-days {args.simulate_days} must be 0 or more")
    if args.deep_every is not None and args.deep_every < 0:
        raise CliError(f"--deep-every {args.deep_every} must be 0 (never) or more")
    if not args.scale > 0:  # checked even when the source exists and the scale is unused
        raise CliError(f"--scale {args.scale:g} must be above 0 (1 = 100k customers, 1M orders)")
    # take the lock before loading dlt, dbt and pandas: a second run is refused at once
    warehouse.ensure_running(settings)
    lock = RunLock(settings.warehouse)
    lock.acquire()
    from loader.orchestrate.job import RunOptions, run_job

    options = RunOptions(simulate_days=args.simulate_days, scale=args.scale,
                         retry_failed=args.retry_failed, full_tests=args.full_tests,
                         deep_every=args.deep_every)
    return run_job(settings, options, echo=echo, lock=lock)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.quality import build_report, send_alerts

    warehouse.ensure_running(settings)
    report = build_report(settings, output_dir=args.output_dir, progress=progress)
    echo(f"quality report: {report.summary()}")
    html = report.html_path if not report.html_error else f"not written: {report.html_error}"
    echo(f"  html (elementary): {html}\n  json: {report.json_path}")
    if args.alert:
        outcome = send_alerts(settings, report)
        for channel, state in outcome.channels.items():
            echo(f"  alerts {channel}: {state}")
    return 0 if report.ok else 1
