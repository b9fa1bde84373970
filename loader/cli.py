"""The `elt` command line: parse, call the package, print. No logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import date

from loader import __version__
from loader.config import ConfigError, Settings, load_settings


class CliError(Exception):
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
            _echo(f"warehouse running: PostgreSQL {st.version} on {st.host}:{st.port} "
                  f"(socket {st.socket_dir}, data {st.data_dir})")
    elif args.action == "stop":
        stopped = warehouse.stop(settings)
        _echo("warehouse stopped" if stopped else "warehouse was not running")
    elif args.action == "status":
        st = warehouse.status(settings)
        if args.json:
            _echo(json.dumps(st.__dict__))
        elif st.running:
            where = f"{st.host}:{st.port}" + (f", socket {st.socket_dir}" if st.socket_dir else "")
            _echo(f"{st.mode} warehouse running: PostgreSQL {st.version} on {where}"
                  + (f", data {st.data_dir}, pid {st.pid}" if st.data_dir else ""))
        else:
            _echo(f"{st.mode} warehouse not running"
                  + (f" (data dir {st.data_dir}); start it with `elt warehouse start`"
                     if st.data_dir else f" or unreachable at {st.host}:{st.port}"))
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
        _echo(f"source advanced {args.days} day(s); rows now: "
              + ", ".join(f"{t} {n:,}" for t, n in rows.items()))
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    return value


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
    url.add_argument("--database", default="warehouse",
                     help="source, warehouse (default) or another database name")
    wh.set_defaults(func=cmd_warehouse)

    src = sub.add_parser("source", help="build or advance the simulated operational database")
    src_sub = src.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = src_sub.add_parser("init", help="create the schema and generate its history")
    init.add_argument("--scale", type=_positive_float, default=0.1,
                      help="1 = 100k customers, 1M orders, 2M bids (default 0.1)")
    init.add_argument("--seed", type=int, default=42, help="same seed, same data (default 42)")
    init.add_argument("--dirty-rate", type=_positive_float, default=0.02,
                      help="share of dirty rows per table (default 0.02)")
    init.add_argument("--end-date", type=date.fromisoformat, default=None,
                      help="last day of the history, YYYY-MM-DD (default: 30 days ago)")
    init.add_argument("--force", action="store_true", help="drop and rebuild an existing source")
    adv = src_sub.add_parser("advance", help="simulate days of activity")
    adv.add_argument("--days", type=int, default=1, help="days to simulate (default 1)")
    src.set_defaults(func=cmd_source)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from loader.db import DatabaseUnavailable
    from loader.source.simulator import SimulatorError
    from loader.warehouse import WarehouseError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        return args.func(args, settings)
    except (ConfigError, CliError, DatabaseUnavailable, SimulatorError, WarehouseError) as exc:
        print(f"elt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("elt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
