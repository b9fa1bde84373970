"""The `elt` command line: parse, call the package, print. No logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from loader import __version__
from loader.config import Settings, UserError, load_settings
from loader.db import DatabaseUnavailable, is_transient
from loader.errors import ExitCode, causes


class CliError(UserError):
    """A user-facing failure: printed without a traceback, exit code 2."""


def _echo(message: str) -> None:
    print(message, flush=True)


def _progress(message: str) -> None:
    print(f"  · {message}", file=sys.stderr, flush=True)


def cmd_warehouse(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse

    if args.action == "start":
        st = warehouse.start(settings)
        if st.mode == "external":
            _echo("external servers configured (ELT_WAREHOUSE_URL/ELT_SOURCE_URL): nothing started")
        else:
            _echo(
                f"warehouse running: PostgreSQL {st.version} on {st.host}:{st.port} "
                f"(socket {st.socket_dir}, data {st.data_dir})"
            )
    elif args.action == "stop":
        stopped = warehouse.stop(settings)
        _echo("warehouse stopped" if stopped else "warehouse was not running")
    elif args.action == "status":
        st = warehouse.status(settings)
        if args.json:
            _echo(json.dumps(st.__dict__))
        elif st.running:
            where = f"{st.host}:{st.port}" + (f", socket {st.socket_dir}" if st.socket_dir else "")
            _echo(
                f"{st.mode} warehouse running: PostgreSQL {st.version} on {where}"
                + (f", data {st.data_dir}, pid {st.pid}" if st.data_dir else "")
            )
        else:
            _echo(
                f"{st.mode} warehouse not running"
                + (
                    f" (data dir {st.data_dir}); start it with `elt warehouse start`"
                    if st.data_dir
                    else f" or unreachable at {st.host}:{st.port}"
                )
            )
            return 1
    elif args.action == "url":
        endpoint = settings.source if args.database == "source" else settings.warehouse
        if args.database not in ("source", "warehouse"):
            endpoint = settings.warehouse.with_database(args.database)
        _echo(endpoint.display)
    return 0


def cmd_source(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.source import simulator

    warehouse.ensure_running(settings)
    if args.action == "init":
        config = simulator.SimConfig(
            scale=args.scale, seed=args.seed, dirty_rate=args.dirty_rate, end_date=args.end_date
        )
        rows = simulator.init(settings.source, config, force=args.force, progress=_progress)
        _echo(f"source initialised at scale {args.scale:g} (seed {args.seed}):")
        for table, n in rows.items():
            _echo(f"  {table:<12} {n:>12,}")
    elif args.action == "advance":
        simulator.advance(settings.source, args.days, progress=_progress)
        rows = simulator.counts(settings.source)
        _echo(
            f"source advanced {args.days} day(s); rows now: "
            + ", ".join(f"{t} {n:,}" for t, n in rows.items())
        )
    return 0


def _loader_config(settings: Settings):
    from loader.extract.tables import load_config

    return load_config(settings.tables_config)


def _print_load(result) -> None:
    from loader.extract.reconcile import reconciled_label

    _echo(f"load {result.load_id or '(nothing new)'} in {result.seconds:.1f}s:")
    _echo(
        f"  {'table':<12} {'mode':<9} {'action':<9} {'extracted':>10} {'source':>10} "
        f"{'raw':>10}  reconciled"
    )
    for r in result.tables.values():
        ok = reconciled_label(r.reconciled)
        _echo(
            f"  {r.table:<12} {r.mode:<9} {r.action:<9} {r.rows_extracted:>10,} "
            f"{r.source_rows if r.source_rows is not None else '-':>10} "
            f"{r.raw_rows if r.raw_rows is not None else '-':>10}  {ok}"
        )
    for r in result.tables.values():
        if r.caught_up:
            _echo(f"  {r.table}: {r.caught_up} row(s) written behind the window (clock skew up "
                  f"to {r.skew_s or 0:.0f}s) were found by their xmin and loaded")
        if r.repaired or r.remaining:
            _echo(f"  {r.table}: the repair after the load moved {r.repaired} row(s)"
                  + (f"; {len(r.remaining)} key range(s) still differ" if r.remaining else ""))
        if r.future_rows:
            _echo(
                f"  {r.table}: {r.future_rows} row(s) dated after the source's clock, key(s) "
                f"{', '.join(r.future_keys)}: correct them at the source"
            )
    if result.dead_letters:
        _echo(
            f"  {result.dead_letters} row(s) could not be loaded and are in ops.dead_letters "
            f"(load_id = '{result.load_id}'): fix them in the source, then `elt load`"
        )


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.extract.pipeline import run_load
    from loader.extract.settle import Unreconciled, settle
    from loader.orchestrate.history import exclusive

    warehouse.ensure_running(settings)
    config = _loader_config(settings)
    with exclusive(settings.warehouse):
        result = run_load(
            settings,
            config,
            tables=args.tables or None,
            full_refresh=args.full_refresh,
            progress=_progress,
        )
        try:
            settle(settings, config, result, _progress)
        except Unreconciled as exc:
            _print_load(result)
            print(f"elt: error: {exc}", file=sys.stderr)
            return ExitCode.FAILED
    _print_load(result)
    return ExitCode.SUCCESS


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.extract.pipeline import run_load
    from loader.orchestrate.history import exclusive

    if args.start and args.end and args.start >= args.end:
        raise CliError(f"--start {args.start} must be before --end {args.end}")
    if args.from_s3:
        return _backfill_from_s3(args, settings)
    if not (args.start and args.end):
        raise CliError("a backfill from the source needs --start and --end "
                       "(only --from-s3 replays every landed load)")
    warehouse.ensure_running(settings)
    with exclusive(settings.warehouse):
        result = run_load(
            settings,
            _loader_config(settings),
            tables=[args.table],
            backfill_window=(args.start, args.end),
            progress=_progress,
        )
    _print_load(result)
    return 0


def _backfill_from_s3(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.aws.landing import backfill_from_s3
    from loader.orchestrate.history import exclusive

    if not settings.aws.s3_url:
        raise CliError("--from-s3 reads the landing zone: set ELT_S3_URL=s3://bucket/prefix")
    warehouse.ensure_running(settings)
    with exclusive(settings.warehouse):
        replay = backfill_from_s3(settings, _loader_config(settings), args.table,
                                  (args.start, args.end), progress=_progress)
    _echo(f"{replay.table}: {len(replay.loads)} landed load(s) replayed from "
          f"{settings.aws.s3_url}: {replay.rows:,} row(s) written, {replay.deleted:,} deleted")
    return ExitCode.SUCCESS


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.aws.export import export_tables

    warehouse.ensure_running(settings)
    for item in export_tables(settings, args.tables, args.to, progress=_progress):
        _echo(f"  {item.relation:<32} {item.rows:>12,} rows  {item.url}")
    return ExitCode.SUCCESS


def cmd_package(args: argparse.Namespace, settings: Settings) -> int:
    from loader.aws.package import build_lambda_zip

    built = build_lambda_zip(Path(args.output), include_dependencies=args.with_dependencies,
                             progress=_progress)
    _echo(built.summary())
    return ExitCode.SUCCESS


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.extract.repair import deep_reconcile
    from loader.orchestrate.history import exclusive

    warehouse.ensure_running(settings)
    if not args.deep:
        from loader.extract.status import loader_status

        rows = loader_status(settings, _loader_config(settings))
        bad = [r for r in rows if r.reconciled is False]
        for r in rows:
            _echo(
                f"  {r.table:<12} source {r.source_rows} raw {r.rows_in_raw} "
                f"{'MISMATCH' if r.reconciled is False else 'ok'}"
            )
        return 1 if bad else 0
    with exclusive(settings.warehouse):
        diffs = deep_reconcile(
            settings,
            _loader_config(settings),
            args.tables or None,
            repair=not args.no_repair,
            progress=_progress,
        )
    if not diffs:
        _echo("deep reconciliation: every key range matches")
        return 0
    _echo(
        f"deep reconciliation: {len(diffs)} key range(s) differed"
        + (" and were re-extracted" if not args.no_repair else " (not repaired)")
    )
    return 0 if not args.no_repair else 1


def cmd_deadletters(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.extract import dead_letters
    from loader.extract.replay import replay
    from loader.orchestrate.history import exclusive

    warehouse.ensure_running(settings)
    if args.action in ("list", "show"):
        if args.action == "show":
            found = dead_letters.letters(settings, letter_id=args.id)
            if not found:
                raise CliError(f"no dead letter {args.id}: `elt deadletters list --all` shows "
                               "every one")
            letter = found[0]
            for name in ("dead_letter_id", "table_name", "row_key", "load_id", "created_at",
                         "attempts", "resolution", "error"):
                _echo(f"{name:<15} {getattr(letter, name)}")
            _echo("row_image       " + json.dumps(letter.row_image, indent=2, default=str))
            return ExitCode.SUCCESS
        found = dead_letters.letters(settings, args.table, resolved=args.all)
        if not found:
            _echo("no dead letters" + ("" if args.all else " pending"))
            return ExitCode.SUCCESS
        _echo(f"  {'id':>6} {'table':<12} {'key':<12} {'tries':>5}  {'state':<22} error")
        for lt in found:
            state = lt.resolution or "pending"
            error = lt.error.strip().splitlines()[0][:70] if lt.error else ""
            _echo(f"  {lt.dead_letter_id:>6} {lt.table_name:<12} {str(lt.row_key):<12} "
                  f"{lt.attempts:>5}  {state[:22]:<22} {error}")
        return ExitCode.SUCCESS
    if args.action == "discard":
        if not dead_letters.discard(settings, args.id):
            raise CliError(f"no pending dead letter {args.id}: `elt deadletters list` shows "
                           "the pending ones")
        _echo(f"dead letter {args.id} discarded (kept in ops.dead_letters)")
        return ExitCode.SUCCESS
    with exclusive(settings.warehouse):  # a replay writes raw
        result = replay(settings, _loader_config(settings), args.table,
                       progress=_progress)
    tables = sorted(set(result.replayed) | set(result.failing) | set(result.skipped))
    if not tables:
        _echo("no dead letters pending: nothing to replay")
    for table in tables:
        if table in result.skipped:
            _echo(f"  {table}: {result.failing.get(table, 0)} still rejected, not replayed: "
                  f"{result.skipped[table]}")
            continue
        _echo(f"  {table}: {result.replayed.get(table, 0)} replayed into raw, "
              f"{result.gone.get(table, 0)} gone from the source, "
              f"{result.failing.get(table, 0)} still rejected")
    return ExitCode.FAILED if any(result.failing.values()) else ExitCode.SUCCESS


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.orchestrate.status import render, run_status

    st = warehouse.status(settings)
    if not st.running:
        raise DatabaseUnavailable(
            "the warehouse is not running: start it with `elt warehouse start`"
        )
    status = run_status(settings, _loader_config(settings))
    if args.json:
        _echo(json.dumps({"warehouse": st.__dict__, **status}, default=str))
        return 0
    for line in render(status):
        _echo(line)
    return 0


def cmd_dag(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from loader import warehouse
    from loader.orchestrate.dbt import run_dbt, target_path
    from loader.orchestrate.picture import draw
    from loader.orchestrate.tasks import source_foreign_keys, waves_for

    warehouse.ensure_running(settings)
    _progress("parsing the dbt project for its lineage (dbt parse, up to a minute)")
    started = time.monotonic()
    run_dbt(settings, "parse")  # the lineage as the project stands now
    _progress(f"parsed in {time.monotonic() - started:.0f} s; reading the source's foreign keys")
    config = _loader_config(settings)
    waves, fks = waves_for(settings, config), source_foreign_keys(settings, config)
    _progress(f"drawing {len(config.tables)} tables in {len(waves)} load waves and the dbt nodes")
    out = draw(waves, target_path() / "manifest.json", Path(args.output), fks)
    _echo(f"wrote {out}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.orchestrate.history import RunLock, ensure_schema

    if args.simulate_days < 0:
        raise CliError(f"--simulate-days {args.simulate_days} must be 0 or more")
    if args.deep_every is not None and args.deep_every < 0:
        raise CliError(f"--deep-every {args.deep_every} must be 0 (never) or more")
    if not args.scale > 0:  # checked even when the source exists and the scale is unused
        raise CliError(f"--scale {args.scale:g} must be above 0 (1 = 100k customers, 1M orders)")
    # take the lock before loading dlt, dbt and pandas: a second run is refused at once
    warehouse.ensure_running(settings)
    ensure_schema(settings.warehouse)
    lock = RunLock(settings.warehouse)
    lock.acquire()
    from loader.orchestrate.job import run_job

    return run_job(settings, simulate_days=args.simulate_days, scale=args.scale,
                   retry_failed=args.retry_failed, full_tests=args.full_tests, echo=_echo,
                   lock=lock, deep_every=args.deep_every)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.quality import build_report, send_alerts

    warehouse.ensure_running(settings)
    report = build_report(settings, output_dir=args.output_dir, progress=_progress)
    _echo(f"quality report: {report.summary()}")
    html = report.html_path if not report.html_error else f"not written: {report.html_error}"
    _echo(f"  html (elementary): {html}\n  json: {report.json_path}")
    if args.alert:
        outcome = send_alerts(settings, report)
        for channel, state in outcome.channels.items():
            _echo(f"  alerts {channel}: {state}")
    return 0 if report.ok else 1


def _number(text: str) -> float:
    """A float for argparse; ranges are checked where the value is used, with advice."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    return value


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO timestamp like 2026-01-31 or 2026-01-31T12:00"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elt",
        description="marketplace-elt: load the marketplace into the warehouse and model it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    wh = sub.add_parser("warehouse", help="start, stop or inspect the embedded PostgreSQL")
    wh_sub = wh.add_subparsers(dest="action", required=True, metavar="ACTION")
    wh_sub.add_parser("start", help="start the embedded server (harmless when running)")
    wh_sub.add_parser("stop", help="stop the embedded server")
    st = wh_sub.add_parser("status", help="whether it runs, where, and its version")
    st.add_argument("--json", action="store_true", help="print JSON")
    url = wh_sub.add_parser("url", help="print a connection URL (never with a password)")
    url.add_argument(
        "--database",
        default="warehouse",
        help="source, warehouse (default) or another database name",
    )
    wh.set_defaults(func=cmd_warehouse)

    src = sub.add_parser("source", help="build or advance the simulated operational database")
    src_sub = src.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = src_sub.add_parser("init", help="create the schema and generate its history")
    init.add_argument(
        "--scale",
        type=_number,
        default=0.1,
        help="1 = 100k customers, 1M orders, 2M bids (default 0.1)",
    )
    init.add_argument("--seed", type=int, default=42, help="same seed, same data (default 42)")
    init.add_argument(
        "--dirty-rate",
        type=_number,
        default=0.02,
        help="share of dirty rows per table (default 0.02)",
    )
    init.add_argument(
        "--end-date",
        type=date.fromisoformat,
        default=None,
        help="the history ends where this day begins (its last day is the day before), "
        "YYYY-MM-DD (default: 30 days ago); `source advance` simulates from this day on",
    )
    init.add_argument("--force", action="store_true", help="drop and rebuild an existing source")
    adv = src_sub.add_parser("advance", help="simulate days of activity")
    adv.add_argument("--days", type=int, default=1, help="days to simulate (default 1)")
    src.set_defaults(func=cmd_source)

    load = sub.add_parser("load", help="extract what changed and merge it into raw")
    load.add_argument("tables", nargs="*", help="tables to load (default: all in tables.yml)")
    load.add_argument(
        "--full-refresh",
        action="store_true",
        help="reload the tables from scratch and reset their watermarks",
    )
    load.set_defaults(func=cmd_load)

    bf = sub.add_parser("backfill", help="re-extract a time window without moving watermarks")
    bf.add_argument("table")
    bf.add_argument("--start", type=_timestamp, help="inclusive, ISO timestamp")
    bf.add_argument("--end", type=_timestamp, help="exclusive, ISO timestamp")
    bf.add_argument(
        "--from-s3",
        action="store_true",
        help="replay the loads landed in ELT_S3_URL (in the window of their load time, or "
        "all) instead of reading the source",
    )
    bf.set_defaults(func=cmd_backfill)

    ex = sub.add_parser("export", help="write warehouse tables to S3 as Parquet (aws extra)")
    ex.add_argument("tables", nargs="+", help="schema.table (a bare name: marts.<name>)")
    ex.add_argument("--to", required=True, help="s3://bucket/prefix")
    ex.set_defaults(func=cmd_export)

    pkg = sub.add_parser("package", help="build a deployment package (aws extra)")
    pkg.add_argument("kind", choices=["lambda"])
    pkg.add_argument("--output", default="dist/elt-lambda.zip", help="the zip to write")
    pkg.add_argument(
        "--with-dependencies",
        action="store_true",
        help="put the runtime dependencies in the zip too, when they fit Lambda's 250 MB",
    )
    pkg.set_defaults(func=cmd_package)

    rec = sub.add_parser("reconcile", help="compare source and raw")
    rec.add_argument("tables", nargs="*")
    rec.add_argument(
        "--deep",
        action="store_true",
        help="compare checksums per key range and re-extract the ranges that differ",
    )
    rec.add_argument("--no-repair", action="store_true", help="with --deep: only report")
    rec.set_defaults(func=cmd_reconcile)

    dl = sub.add_parser("deadletters", help="rows set aside by the loader: list, replay")
    dl_sub = dl.add_subparsers(dest="action", required=True, metavar="ACTION")
    dl_list = dl_sub.add_parser("list", help="pending dead letters (--all: resolved too)")
    dl_list.add_argument("table", nargs="?", default=None)
    dl_list.add_argument("--all", action="store_true", help="also the resolved ones")
    dl_show = dl_sub.add_parser("show", help="one dead letter with its row and error")
    dl_show.add_argument("id", type=int)
    dl_replay = dl_sub.add_parser(
        "replay", help="once the cause is fixed, extract the rows again by key into raw"
    )
    dl_replay.add_argument("table", nargs="?", default=None)
    dl_discard = dl_sub.add_parser("discard", help="mark one as discarded (it is kept)")
    dl_discard.add_argument("id", type=int)
    dl.set_defaults(func=cmd_deadletters)

    status = sub.add_parser("status", help="watermarks, last loads and reconciliation")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)

    run = sub.add_parser("run", help="the whole job: warehouse, source, load, dbt")
    run.add_argument(
        "--simulate-days", type=int, default=0, help="advance the simulated source by N days first"
    )
    run.add_argument(
        "--scale",
        type=_number,
        default=0.1,
        help="scale of the source built on a fresh ELT_HOME (default 0.1)",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="rerun the tasks that failed (ops.failed_tasks) and what follows them",
    )
    run.add_argument(
        "--full-tests",
        action="store_true",
        help="run the dbt tests on every row (by default, after a successful build, the "
        "row-by-row tests check only the rows written since)",
    )
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
    report.add_argument(
        "--alert",
        action="store_true",
        help="send failures and anomalies to the ELT_ALERT_* channels",
    )
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        return args.func(args, settings)
    except DatabaseUnavailable as exc:  # the server went away: not the user's input
        print(f"elt: error: {exc}", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    except UserError as exc:
        print(f"elt: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("elt: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:
        lost = next((c for c in causes(exc) if is_transient(c)), None)
        if lost is None:
            raise  # a bug: the traceback is what helps
        print(f"elt: error: lost the connection to a database: {str(lost).strip()}; "
              "check `elt warehouse status`, then run the command again", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    except BrokenPipeError:  # `elt status | head`: the reader left, nothing to report
        sys.stdout = None
        return 0


if __name__ == "__main__":
    sys.exit(main())
