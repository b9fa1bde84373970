"""What every Dagster asset of the pipeline shares: the settings `elt` reads, the warehouse
lock `elt run` takes, and `elt run`'s classification of failures for the retries."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from loader import warehouse
from loader.config import Settings, load_settings
from loader.orchestrate import history
from loader.orchestrate.runner import RETRIES, RETRY_BASE_DELAY, retryable

# transient failures (connection loss, serialisation failure, deadlock, a database that stayed
# away: loader.orchestrate.runner.retryable, as for `elt run`'s tasks) are retried with
# exponential backoff and jitter; any other failure fails the step at once (fail_fast)
RETRY_POLICY = dg.RetryPolicy(
    max_retries=RETRIES,
    delay=RETRY_BASE_DELAY,
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)
# Dagster's own concurrency pool for the steps that write the warehouse (limit it to 1 in
# dagster.yaml); the advisory lock below also keeps them apart from `elt run` and `elt load`
POOL = "marketplace_warehouse"


class EltResource(dg.ConfigurableResource):
    """The pipeline's settings, read from the same environment as `elt` (ELT_ENV,
    ELT_WAREHOUSE_URL, ELT_SOURCE_URL, ELT_WAREHOUSE_PASSWORD, ELT_SOURCE_PASSWORD, ELT_HOME,
    ...: loader.config, the one place that reads it), so one configuration serves both.
    `environ` adds variables on top of the process's (never put a password there: Dagster
    shows resource config in its UI; use the environment)."""

    environ: dict[str, str] = {}
    # how long a step waits for the warehouse lock held by `elt run` or another step
    lock_wait_seconds: float = 3600.0

    def settings(self) -> Settings:
        return load_settings({**os.environ, **self.environ})

    @contextmanager
    def exclusive(self, context: dg.AssetExecutionContext,
                  what: str) -> Iterator[Settings]:
        """The settings, with the warehouse lock of `elt run` held (history.RunLock): a
        Dagster step and an `elt run` never overlap. The step names itself as the holder, so
        a refused `elt run` says which Dagster run has the warehouse."""
        settings = self.settings()
        warehouse.ensure_running(settings)
        holder = f"dagster run {context.run.run_id[:8]} ({what})"
        context.log.info(f"{holder}: taking the warehouse lock (waits up to "
                         f"{self.lock_wait_seconds:g}s for `elt run` or another step)")
        with history.exclusive(settings.warehouse, holder=holder,
                               wait_s=self.lock_wait_seconds):
            yield settings


@contextmanager
def retried_if_transient() -> Iterator[None]:
    """Let RETRY_POLICY retry what `elt run` retries; turn every other failure into a
    Dagster Failure that is not retried, with the loader's own message."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        if retryable(exc):
            raise
        raise dg.Failure(
            description=f"{type(exc).__name__}: {str(exc).strip()[:4000]}",
            allow_retries=False,
        ) from exc


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ for the duration (dagster-dbt passes the process environment
    to dbt, whose profile reads the warehouse from it), then as it was."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
