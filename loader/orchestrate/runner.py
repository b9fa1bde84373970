"""Run a DAG of tasks: waves of independent tasks in parallel, retries on transient errors,
downstream tasks skipped when an upstream task fails, every attempt recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import networkx as nx

from loader.db import DatabaseUnavailable, backoff_delays, is_transient
from loader.errors import causes


class TaskStatus(StrEnum):
    """How a task attempt ended (RETRY: failed, and tried again) or why it never ran."""

    SUCCESS = "success"
    FAILED = "failed"
    RETRY = "retry"
    SKIPPED = "skipped"  # an upstream task failed


class RunStatus(StrEnum):
    """Where a run of `elt run` stands, as the run history records it."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CRASHED = "crashed"  # its process died before it recorded its end

# how transient failures are retried: extra attempts, first delay, longest delay (seconds);
# the Dagster assets' RetryPolicy (loader/dagster) uses the same numbers
RETRIES, RETRY_BASE_DELAY, RETRY_MAX_DELAY = 3, 1.0, 30.0


@dataclass
class Task:
    name: str
    fn: Callable[[], int | None]  # returns rows processed, when that means something
    deps: tuple[str, ...] = ()
    tables: list[str] | None = None
    inputs: dict = field(default_factory=dict)
    retries: int = RETRIES  # extra attempts after the first, for transient errors only


@dataclass
class TaskOutcome:
    task: Task
    status: TaskStatus
    attempts: int = 0
    rows: int | None = None
    error: str | None = None
    seconds: float = 0.0
    unavailable: bool = False  # it failed because a database stayed unreachable


@dataclass(frozen=True)
class Attempt:
    """One attempt of a task, as run_dag reports it when it ends."""

    task: Task
    number: int  # 1 for the first attempt
    status: TaskStatus
    started: datetime
    finished: datetime
    rows: int | None = None
    error: str | None = None


def retryable(exc: BaseException) -> bool:
    """Whether a retry can cure `exc`: a database that stayed away, a lost connection, a
    serialisation failure or a deadlock anywhere in its chain of causes."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    return any(is_transient(cause) for cause in causes(exc))


def task_graph(tasks: list[Task]) -> nx.DiGraph:
    graph = nx.DiGraph()
    names = {t.name for t in tasks}
    for task in tasks:
        graph.add_node(task.name, task=task)
        for dep in task.deps:
            if dep in names:
                graph.add_edge(dep, task.name)
    return graph


def run_dag(
    tasks: list[Task],
    *,
    workers: int = 4,
    on_attempt: Callable[[Attempt], None] = lambda _: None,
    on_progress: Callable[[int, int, str], None] = lambda *a: None,
    sleep: Callable[[float], None] = time.sleep,
    base_delay: float = RETRY_BASE_DELAY,
) -> dict[str, TaskOutcome]:
    """Execute the tasks in dependency order; independent tasks of one wave run in parallel."""
    graph = task_graph(tasks)
    outcomes: dict[str, TaskOutcome] = {}

    def attempt_all(task: Task) -> TaskOutcome:
        delays = backoff_delays(task.retries + 1, base=base_delay, cap=RETRY_MAX_DELAY)
        attempt = 0
        t0 = time.monotonic()
        while True:
            attempt += 1
            started = datetime.now(UTC)
            try:
                rows = task.fn()
            except Exception as exc:  # noqa: BLE001 - every failure is recorded
                error = f"{type(exc).__name__}: {str(exc).strip()[:2000]}"
                transient = retryable(exc)
                delay = next(delays, None) if transient else None
                status = TaskStatus.FAILED if delay is None else TaskStatus.RETRY
                on_attempt(Attempt(task, attempt, status, started, datetime.now(UTC), None, error))
                if delay is None:
                    return TaskOutcome(task, TaskStatus.FAILED, attempt, None, error,
                                       time.monotonic() - t0, transient)
                sleep(delay)
                continue
            on_attempt(Attempt(task, attempt, TaskStatus.SUCCESS, started, datetime.now(UTC), rows))
            return TaskOutcome(task, TaskStatus.SUCCESS, attempt, rows, None, time.monotonic() - t0)

    total = len(tasks)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for wave in nx.topological_generations(graph):
            runnable, futures = [], {}
            for name in wave:
                task = graph.nodes[name]["task"]
                blocked = [d for d in graph.predecessors(name)
                           if outcomes[d].status != TaskStatus.SUCCESS]
                if blocked:
                    outcomes[name] = TaskOutcome(
                        task, TaskStatus.SKIPPED, error=f"upstream {', '.join(blocked)} failed"
                    )
                    continue
                runnable.append(task)
            for task in runnable:
                futures[task.name] = pool.submit(attempt_all, task)
            for name, future in futures.items():
                outcomes[name] = future.result()
            on_progress(len(outcomes), total, ", ".join(wave))
    return outcomes
