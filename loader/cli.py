"""The `elt` command line: parse, call the package, print. No logic lives here: each command
group is a module of loader/commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from loader import __version__
from loader.commands import aws, databases, loading, runs
from loader.config import UserError, load_settings
from loader.db import DatabaseUnavailable, is_transient
from loader.errors import ExitCode, causes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elt",
        description="marketplace-elt: load the marketplace into the warehouse and model it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (databases, loading, aws, runs):
        group.add_parsers(sub)
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
