"""Child programs (dbt, psql) that end with the `elt` process that started them.

A supervisor that signals one PID, or the OOM killer, ends `elt` alone: its `dbt build`
would go on writing marts without the run lock while a new run builds beside it. On Linux
the child asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG); the kernel
sends it when the thread that started the child ends, so callers wait for the child on the
thread that started it (subprocess.run does)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Runs in the child between fork and exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _tie_to_this_process(kwargs: dict[str, Any]) -> dict[str, Any]:
    if sys.platform.startswith("linux"):
        parent = os.getpid()
        kwargs["preexec_fn"] = lambda: _die_with_parent(parent)
    return kwargs


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run, with a child that is killed when this process dies."""
    return subprocess.run(args, **_tie_to_this_process(kwargs))


def stream(
    args: list[str], on_line: Callable[[str], None], **kwargs: Any
) -> subprocess.CompletedProcess:
    """Like run(..., capture_output=True, text=True), with stderr merged into stdout, and
    every line of output handed to `on_line` as the child writes it (progress of a long
    command). The child is waited for on this thread, so it dies with this process too."""
    kwargs = _tie_to_this_process(
        {**kwargs, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    )
    lines: list[str] = []
    with subprocess.Popen(args, **kwargs) as child:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            on_line(line.rstrip("\n"))
        returncode = child.wait()
    return subprocess.CompletedProcess(args, returncode, "".join(lines), "")
