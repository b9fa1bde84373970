"""Load order from foreign keys, and the DAG runner's retries, waves and skips."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from loader.orchestrate.graph import DependencyCycle, load_waves, table_graph
from loader.orchestrate.runner import Task, TaskStatus, run_dag
from loader.orchestrate.tasks import select_for_retry

MARKETPLACE_FKS = [
    ("products", "customers"), ("orders", "customers"), ("order_items", "orders"),
    ("payments", "orders"), ("bids", "products"), ("bids", "customers"),
]


def test_load_order_puts_parents_before_children():
    tables = ["bids", "payments", "order_items", "orders", "products", "customers"]
    waves = load_waves(table_graph(tables, MARKETPLACE_FKS))
    assert waves == [["customers"], ["orders", "products"], ["bids", "order_items", "payments"]]


def test_unlisted_tables_and_self_references_do_not_constrain():
    waves = load_waves(table_graph(["a", "b"], [("a", "a"), ("a", "zzz"), ("b", "a")]))
    assert waves == [["a"], ["b"]]


def test_a_cycle_is_reported_with_its_tables():
    fks = [("a", "c"), ("b", "a"), ("c", "b"), ("d", "a")]
    with pytest.raises(DependencyCycle, match=r"cycle: (a -> b -> c -> a|b -> c -> a -> b|"
                                              r"c -> a -> b -> c)"):
        load_waves(table_graph(["a", "b", "c", "d"], fks))


def transient() -> Exception:
    return psycopg2.OperationalError("server closed the connection unexpectedly")


def test_independent_tasks_of_a_wave_run_in_parallel():
    active, peak = [0], [0]
    lock = threading.Lock()

    def work():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        return 1

    tasks = [Task("root", lambda: 0)] + [Task(f"t{i}", work, deps=("root",)) for i in range(3)]
    outcomes = run_dag(tasks, workers=3)
    assert peak[0] == 3
    assert all(o.status == TaskStatus.SUCCESS for o in outcomes.values())


def test_transient_failure_is_retried_then_succeeds():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise transient()
        return 42

    attempts = []
    outcomes = run_dag([Task("load", flaky, retries=3)], sleep=lambda _: None,
                       on_attempt=lambda at: attempts.append((at.number, at.status)))
    assert outcomes["load"].status == TaskStatus.SUCCESS and outcomes["load"].rows == 42
    assert attempts == [(1, "retry"), (2, "retry"), (3, TaskStatus.SUCCESS)]


def test_exhausted_retries_fail_the_task_and_skip_what_follows():
    def always():
        raise transient()

    tasks = [Task("load", always, retries=2), Task("dbt", lambda: 1, deps=("load",)),
             Task("other", lambda: 1)]
    outcomes = run_dag(tasks, sleep=lambda _: None)
    assert outcomes["load"].status == TaskStatus.FAILED and outcomes["load"].attempts == 3
    assert outcomes["dbt"].status == TaskStatus.SKIPPED
    assert outcomes["other"].status == TaskStatus.SUCCESS


def test_permanent_errors_are_not_retried():
    def broken():
        raise ValueError("bad config")

    outcomes = run_dag([Task("load", broken, retries=5)], sleep=lambda _: None)
    assert outcomes["load"].attempts == 1 and "bad config" in outcomes["load"].error


def test_retry_failed_selects_the_failed_tasks_and_their_downstream():
    tasks = [Task("w1", lambda: 0), Task("w2", lambda: 0, deps=("w1",)),
             Task("dbt", lambda: 0, deps=("w2",)), Task("fresh", lambda: 0, deps=("dbt",))]
    picked = select_for_retry(tasks, {"w2"})
    assert [t.name for t in picked] == ["w2", "dbt", "fresh"]
    assert picked[0].deps == ()


def test_a_cause_chain_that_loops_back_on_itself_ends():
    """`raise exc from exc` makes an error its own cause: the runner once walked that loop
    forever while holding the run lock."""
    from loader.errors import causes
    from loader.orchestrate.runner import retryable

    error = RuntimeError("not one of the loader's own errors")
    error.__cause__ = error
    assert causes(error) == [error]
    assert retryable(error) is False
    outer = ValueError("outer")
    outer.__cause__, error.__cause__ = error, outer
    assert causes(outer) == [outer, error]


def test_exit_codes_tell_failures_apart():
    from loader.errors import ExitCode
    from loader.orchestrate.job import exit_code
    from loader.orchestrate.runner import Task, TaskOutcome, TaskStatus

    task = Task("t", lambda: 0)
    assert exit_code({"t": TaskOutcome(task, TaskStatus.SUCCESS)}) == ExitCode.SUCCESS == 0
    assert exit_code({"t": TaskOutcome(task, TaskStatus.FAILED)}) == ExitCode.FAILED == 1
    gone = TaskOutcome(task, TaskStatus.FAILED, unavailable=True)
    failed = TaskOutcome(task, TaskStatus.FAILED)
    assert exit_code({"t": failed, "u": gone}) == ExitCode.UNAVAILABLE == 3
