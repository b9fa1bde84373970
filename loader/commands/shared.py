"""What every `elt` command shares: how it prints, its user-facing error, its argument types
and the loader's table config."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from loader.config import Settings, UserError


class CliError(UserError):
    """A user-facing failure: printed without a traceback, exit code 2."""


def echo(message: str) -> None:
    print(message, flush=True)


def progress(message: str) -> None:
    print(f"  · {message}", file=sys.stderr, flush=True)


def loader_config(settings: Settings):
    from loader.extract.tables import load_config

    return load_config(settings.tables_config)


def flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:  # noqa: A002
    """An option that is off unless given (`--json`, `--force`...)."""
    parser.add_argument(name, action="store_true", help=help)


def number(text: str) -> float:
    """A float for argparse; ranges are checked where the value is used, with advice."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    return value


def timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO timestamp like 2026-01-31 or 2026-01-31T12:00"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
