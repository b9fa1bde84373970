"""How failures reach the user: the exit codes of `elt`, and the chain of causes of an error."""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class ExitCode(IntEnum):
    """What `elt` returns, so that a scheduler can tell the kinds of failure apart."""

    SUCCESS = 0
    FAILED = 1  # the run (a task, or the data) failed: see `elt status`
    BAD_INPUT = 2  # bad input or configuration, or a run refused (another one holds the lock)
    UNAVAILABLE = 3  # the warehouse or the source went away (after every retry)
    INTERRUPTED = 130  # Ctrl-C


def causes(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from (dlt wraps the database error it met),
    each once: a chain that loops back on itself ends where it repeats."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def first_cause(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of `kind` in the chain of `exc`, if any."""
    return next((c for c in causes(exc) if isinstance(c, kind)), None)
