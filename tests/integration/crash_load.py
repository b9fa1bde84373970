"""Run one load and SIGKILL it in a chosen phase: extract, normalize, load, or committed (the
first COPY of a whole table has committed, dlt has not yet recorded its job as done)."""

from __future__ import annotations

import os
import signal
import sys

from loader.config import load_settings
from loader.extract import export
from loader.extract import pipeline as loader_pipeline
from loader.extract.tables import load_config


def kill_on_call(owner, name: str, after: int) -> None:
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def main(phase: str) -> None:
    if phase == "extract":
        kill_on_call(export, "export_table", after=2)
    elif phase == "normalize":
        from dlt.pipeline.pipeline import Pipeline

        kill_on_call(Pipeline, "normalize", after=0)
    elif phase == "load":
        from loader.extract.binary_copy import BinaryCopyJob

        kill_on_call(BinaryCopyJob, "run", after=2)
    elif phase == "committed":
        from loader.extract.binary_copy import BinaryCopyJob

        run = BinaryCopyJob.run

        def run_then_die(self) -> None:
            run(self)
            if self._load_table.get("write_disposition") != "merge":
                os.kill(os.getpid(), signal.SIGKILL)

        BinaryCopyJob.run = run_then_die
    else:
        raise SystemExit(f"unknown phase {phase}")
    settings = load_settings()
    loader_pipeline.run_load(settings, load_config(settings.tables_config))
    raise SystemExit("the load finished: the kill did not happen")


if __name__ == "__main__":
    main(sys.argv[1])
