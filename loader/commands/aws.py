"""The commands of the aws extra: `elt export` (warehouse tables to S3 as Parquet) and
`elt package` (the Lambda zip)."""

from __future__ import annotations

import argparse
from pathlib import Path

from loader.commands.shared import echo, flag, progress
from loader.config import Settings
from loader.errors import ExitCode


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("export", help="write warehouse tables to S3 as Parquet (aws extra)")
    ex.add_argument("tables", nargs="+", help="schema.table (a bare name: marts.<name>)")
    ex.add_argument("--to", required=True, help="s3://bucket/prefix")
    ex.set_defaults(func=cmd_export)

    pkg = sub.add_parser("package", help="build a deployment package (aws extra)")
    pkg.add_argument("kind", choices=["lambda"])
    pkg.add_argument("--output", default="dist/elt-lambda.zip", help="the zip to write")
    flag(pkg, "--with-dependencies",
         "put the runtime dependencies in the zip too, when they fit Lambda's 250 MB")
    pkg.set_defaults(func=cmd_package)


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from loader import warehouse
    from loader.aws.export import export_tables

    warehouse.ensure_running(settings)
    for item in export_tables(settings, args.tables, args.to, progress=progress):
        echo(f"  {item.relation:<32} {item.rows:>12,} rows  {item.url}")
    return ExitCode.SUCCESS


def cmd_package(args: argparse.Namespace, settings: Settings) -> int:
    from loader.aws.package import build_lambda_zip

    built = build_lambda_zip(Path(args.output), include_dependencies=args.with_dependencies,
                             progress=progress)
    echo(built.summary())
    return ExitCode.SUCCESS
