"""The commands that run the databases: `elt warehouse` (the embedded PostgreSQL) and
`elt source` (the simulated operational database)."""

from __future__ import annotations

import argparse
import json
from datetime import date

from loader.commands.shared import echo, flag, number, progress
from loader.config import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    wh = sub.add_parser("warehouse", help="start, stop or inspect the embedded PostgreSQL")
    wh_sub = wh.add_subparsers(dest="action", required=True, metavar="ACTION")
    wh_sub.add_parser("start", help="start the embedded server (harmless when running)")
    wh_sub.add_parser("stop", help="stop the embedded server")
    st = wh_sub.add_parser("status", help="whether it runs, where, and its version")
    flag(st, "--json", "print JSON")
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
        type=number,
        default=0.1,
        help="1 = 100k customers, 1M orders, 2M bids (default 0.1)",
    )
    init.add_argument("--seed", type=int, default=42, help="same seed, same data (default 42)")
    init.add_argument(
        "--dirty-rate",
        type=number,
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
    flag(init, "--force", "drop and rebuild an existing source")
    adv = src_sub.add_parser("advance", help="simulate days of activity")
    adv.add_argument("--days", type=int, default=1, help="days to simulate (default 1)")
    src.set_defaults(func=cmd_source)


def cmd_warehouse(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse

    if args.action == "start":
        st = warehouse.start(settings)
        if st.mode == "external":
            echo("external servers configured (ELT_WAREHOUSE_URL/ELT_SOURCE_URL): nothing started")
        else:
            echo(
                f"warehouse running: PostgreSQL {st.version} on {st.host}:{st.port} "
                f"(socket {st.socket_dir}, data {st.data_dir})"
            )
    elif args.action == "stop":
        stopped = warehouse.stop(settings)
        echo("warehouse stopped" if stopped else "warehouse was not running")
    elif args.action == "status":
        st = warehouse.status(settings)
        if args.json:
            echo(json.dumps(st.__dict__))
        elif st.running:
            where = f"{st.host}:{st.port}" + (f", socket {st.socket_dir}" if st.socket_dir else "")
            echo(
                f"{st.mode} warehouse running: PostgreSQL {st.version} on {where}"
                + (f", data {st.data_dir}, pid {st.pid}" if st.data_dir else "")
            )
        else:
            echo(
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
        echo(endpoint.display)
    return 0


def cmd_source(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.source import simulator

    warehouse.ensure_running(settings)
    if args.action == "init":
        config = simulator.SimConfig(
            scale=args.scale, seed=args.seed, dirty_rate=args.dirty_rate, end_date=args.end_date
        )
        rows = simulator.init(settings.source, config, force=args.force, progress=progress)
        echo(f"source initialised at scale {args.scale:g} (seed {args.seed}):")
        for table, n in rows.items():
            echo(f"  {table:<12} {n:>12,}")
    elif args.action == "advance":
        simulator.advance(settings.source, args.days, progress=progress)
        rows = simulator.counts(settings.source)
        echo(
            f"source advanced {args.days} day(s); rows now: "
            + ", ".join(f"{t} {n:,}" for t, n in rows.items())
        )
    return 0
