"""`elt run`: the whole job on one command — warehouse, source, load, dbt, summary."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from loader import warehouse
from loader.config import PROJECT_ROOT, Settings, dbt_environment
from loader.extract.pipeline import run_load
from loader.extract.tables import load_config
from loader.source import simulator


class StepFailed(RuntimeError):
    """A step of the run failed; later steps did not run."""


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def run_dbt(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a dbt command in the project with the warehouse's profile variables."""
    env = {**os.environ, **dbt_environment(settings)}
    result = subprocess.run(
        [dbt_executable(), *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-30:])
        raise StepFailed(f"`dbt {' '.join(args)}` failed (exit {result.returncode}):\n{tail}")
    return result


def run_pipeline(
    settings: Settings,
    *,
    simulate_days: int = 0,
    scale: float = 0.1,
    echo: Callable[[str], None] = print,
    progress: Callable[[str], None] = lambda _: None,
) -> int:
    t0 = time.monotonic()
    progress("starting the warehouse")
    warehouse.ensure_running(settings)
    if not simulator.is_initialised(settings.source):
        progress(f"building the simulated source at scale {scale:g}")
        simulator.init(settings.source, simulator.SimConfig(scale=scale), progress=progress)
    if simulate_days:
        simulator.advance(settings.source, simulate_days, progress=progress)
    config = load_config(settings.tables_config)
    progress("loading")
    result = run_load(settings, config, progress=progress)
    dbt_summary = None
    if (PROJECT_ROOT / "dbt_project.yml").exists():
        progress("dbt build")
        run_dbt(settings, "seed")
        build = run_dbt(settings, "build")
        dbt_summary = next(
            (line for line in reversed(build.stdout.splitlines()) if "PASS=" in line), None
        )
    echo(f"elt run finished in {time.monotonic() - t0:.1f}s")
    echo(f"  {'table':<12} {'extracted':>10} {'raw rows':>10}  reconciled")
    for r in result.tables.values():
        ok = {True: "yes", False: "MISMATCH", None: "-"}[r.reconciled]
        echo(f"  {r.table:<12} {r.rows_extracted:>10,} {r.raw_rows or 0:>10,}  {ok}")
    if dbt_summary:
        echo(f"  dbt: {dbt_summary.split('Done.')[-1].strip()}")
    return 0
