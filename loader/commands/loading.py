"""The commands that move rows into raw: `elt load`, `elt backfill`, `elt reconcile` and
`elt deadletters`."""

from __future__ import annotations

import argparse
import json
import sys

from loader.commands.shared import CliError, echo, flag, loader_config, progress, timestamp
from loader.config import Settings
from loader.errors import ExitCode


def add_parsers(sub: argparse._SubParsersAction) -> None:
    load = sub.add_parser("load", help="extract what changed and merge it into raw")
    load.add_argument("tables", nargs="*", help="tables to load (default: all in tables.yml)")
    flag(load, "--full-refresh", "reload the tables from scratch and reset their watermarks")
    load.set_defaults(func=cmd_load)

    bf = sub.add_parser("backfill", help="re-extract a time window without moving watermarks")
    bf.add_argument("table")
    bf.add_argument("--start", type=timestamp, help="inclusive, ISO timestamp")
    bf.add_argument("--end", type=timestamp, help="exclusive, ISO timestamp")
    flag(bf, "--from-s3", "replay the loads landed in ELT_S3_URL (in the window of their load "
         "time, or all) instead of reading the source")
    bf.set_defaults(func=cmd_backfill)

    rec = sub.add_parser("reconcile", help="compare source and raw")
    rec.add_argument("tables", nargs="*")
    flag(rec, "--deep", "compare checksums per key range and re-extract the ranges that differ")
    flag(rec, "--no-repair", "with --deep: only report")
    rec.set_defaults(func=cmd_reconcile)

    dl = sub.add_parser("deadletters", help="rows set aside by the loader: list, replay")
    dl_sub = dl.add_subparsers(dest="action", required=True, metavar="ACTION")
    dl_list = dl_sub.add_parser("list", help="pending dead letters (--all: resolved too)")
    dl_list.add_argument("table", nargs="?", default=None)
    flag(dl_list, "--all", "also the resolved ones")
    dl_show = dl_sub.add_parser("show", help="one dead letter with its row and error")
    dl_show.add_argument("id", type=int)
    dl_replay = dl_sub.add_parser(
        "replay", help="once the cause is fixed, extract the rows again by key into raw"
    )
    dl_replay.add_argument("table", nargs="?", default=None)
    dl_discard = dl_sub.add_parser("discard", help="mark one as discarded (it is kept)")
    dl_discard.add_argument("id", type=int)
    dl.set_defaults(func=cmd_deadletters)


def _print_load(result) -> None:
    from loader.extract.reconcile import reconciled_label

    echo(f"load {result.load_id or '(nothing new)'} in {result.seconds:.1f}s:")
    echo(
        f"  {'table':<12} {'mode':<9} {'action':<9} {'extracted':>10} {'source':>10} "
        f"{'raw':>10}  reconciled"
    )
    for r in result.tables.values():
        ok = reconciled_label(r.reconciled)
        echo(
            f"  {r.table:<12} {r.mode:<9} {r.action:<9} {r.rows_extracted:>10,} "
            f"{r.source_rows if r.source_rows is not None else '-':>10} "
            f"{r.raw_rows if r.raw_rows is not None else '-':>10}  {ok}"
        )
    for r in result.tables.values():
        if r.caught_up:
            echo(f"  {r.table}: {r.caught_up} row(s) written behind the window (clock skew up "
                  f"to {r.skew_s or 0:.0f}s) were found by their xmin and loaded")
        if r.repaired or r.remaining:
            echo(f"  {r.table}: the repair after the load moved {r.repaired} row(s)"
                  + (f"; {len(r.remaining)} key range(s) still differ" if r.remaining else ""))
        if r.future_rows:
            echo(
                f"  {r.table}: {r.future_rows} row(s) dated after the source's clock, key(s) "
                f"{', '.join(r.future_keys)}: correct them at the source"
            )
    if result.dead_letters:
        echo(
            f"  {result.dead_letters} row(s) could not be loaded and are in ops.dead_letters "
            f"(load_id = '{result.load_id}'): fix them in the source, then `elt load`"
        )


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.extract.pipeline import run_load
    from loader.extract.plan import LoadRequest
    from loader.extract.settle import Unreconciled, settle
    from loader.orchestrate.history import exclusive

    warehouse.ensure_running(settings)
    config = loader_config(settings)
    with exclusive(settings.warehouse):
        request = LoadRequest(args.tables or None, full_refresh=args.full_refresh)
        result = run_load(settings, config, request, progress=progress)
        try:
            settle(settings, config, result, progress)
        except Unreconciled as exc:
            _print_load(result)
            print(f"elt: error: {exc}", file=sys.stderr)
            return ExitCode.FAILED
    _print_load(result)
    return ExitCode.SUCCESS


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.extract.pipeline import run_load
    from loader.extract.plan import LoadRequest
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
        request = LoadRequest([args.table], backfill_window=(args.start, args.end))
        result = run_load(settings, loader_config(settings), request, progress=progress)
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
        replay = backfill_from_s3(settings, loader_config(settings), args.table,
                                  (args.start, args.end), progress=progress)
    echo(f"{replay.table}: {len(replay.loads)} landed load(s) replayed from "
          f"{settings.aws.s3_url}: {replay.rows:,} row(s) written, {replay.deleted:,} deleted")
    return ExitCode.SUCCESS


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.extract.repair import deep_reconcile
    from loader.orchestrate.history import exclusive

    warehouse.ensure_running(settings)
    if not args.deep:
        from loader.extract.status import loader_status

        rows = loader_status(settings, loader_config(settings))
        bad = [r for r in rows if r.reconciled is False]
        for r in rows:
            echo(
                f"  {r.table:<12} source {r.source_rows} raw {r.rows_in_raw} "
                f"{'MISMATCH' if r.reconciled is False else 'ok'}"
            )
        return 1 if bad else 0
    with exclusive(settings.warehouse):
        diffs = deep_reconcile(
            settings,
            loader_config(settings),
            args.tables or None,
            repair=not args.no_repair,
            progress=progress,
        )
    if not diffs:
        echo("deep reconciliation: every key range matches")
        return 0
    echo(
        f"deep reconciliation: {len(diffs)} key range(s) differed"
        + (" and were re-extracted" if not args.no_repair else " (not repaired)")
    )
    return 0 if not args.no_repair else 1


def cmd_deadletters(args: argparse.Namespace, settings: Settings) -> int:
    from loader import schemas, warehouse
    from loader.extract import dead_letters
    from loader.extract.replay import replay
    from loader.orchestrate.history import exclusive

    warehouse.ensure_running(settings)
    schemas.ensure_on(settings.warehouse, "ops")
    if args.action in ("list", "show"):
        if args.action == "show":
            found = dead_letters.letters(settings, letter_id=args.id)
            if not found:
                raise CliError(f"no dead letter {args.id}: `elt deadletters list --all` shows "
                               "every one")
            letter = found[0]
            for name in ("dead_letter_id", "table_name", "row_key", "load_id", "created_at",
                         "attempts", "resolution", "error"):
                echo(f"{name:<15} {getattr(letter, name)}")
            echo("row_image       " + json.dumps(letter.row_image, indent=2, default=str))
            return ExitCode.SUCCESS
        found = dead_letters.letters(settings, args.table, resolved=args.all)
        if not found:
            echo("no dead letters" + ("" if args.all else " pending"))
            return ExitCode.SUCCESS
        echo(f"  {'id':>6} {'table':<12} {'key':<12} {'tries':>5}  {'state':<22} error")
        for lt in found:
            state = lt.resolution or "pending"
            error = lt.error.strip().splitlines()[0][:70] if lt.error else ""
            echo(f"  {lt.dead_letter_id:>6} {lt.table_name:<12} {str(lt.row_key):<12} "
                  f"{lt.attempts:>5}  {state[:22]:<22} {error}")
        return ExitCode.SUCCESS
    if args.action == "discard":
        if not dead_letters.discard(settings, args.id):
            raise CliError(f"no pending dead letter {args.id}: `elt deadletters list` shows "
                           "the pending ones")
        echo(f"dead letter {args.id} discarded (kept in ops.dead_letters)")
        return ExitCode.SUCCESS
    with exclusive(settings.warehouse):  # a replay writes raw
        result = replay(settings, loader_config(settings), args.table,
                       progress=progress)
    tables = sorted(set(result.replayed) | set(result.failing) | set(result.skipped))
    if not tables:
        echo("no dead letters pending: nothing to replay")
    for table in tables:
        if table in result.skipped:
            echo(f"  {table}: {result.failing.get(table, 0)} still rejected, not replayed: "
                  f"{result.skipped[table]}")
            continue
        echo(f"  {table}: {result.replayed.get(table, 0)} replayed into raw, "
              f"{result.gone.get(table, 0)} gone from the source, "
              f"{result.failing.get(table, 0)} still rejected")
    return ExitCode.FAILED if any(result.failing.values()) else ExitCode.SUCCESS
