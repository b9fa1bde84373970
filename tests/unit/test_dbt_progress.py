"""Progress of a running `dbt build`, read from the lines dbt writes (loader.orchestrate.dbt)."""

from __future__ import annotations

import subprocess
import sys

from loader import children
from loader.orchestrate.dbt import DbtProgress

LINES = [
    "12:00:00  Running with dbt=1.11.16",
    "12:00:01  1 of 4 START sql view model dev_staging.stg_orders ...... [RUN]",
    "12:00:01  1 of 4 OK created sql view model dev_staging.stg_orders . [CREATE VIEW in 0.1s]",
    "12:00:02  2 of 4 START test not_null_stg_orders_order_id ......... [RUN]",
    "12:00:02  2 of 4 FAIL 3 not_null_stg_orders_order_id ............ [FAIL 3 in 0.1s]",
    "12:00:03  3 of 4 ERROR creating sql table model dev_marts_build.fct_orders [ERROR]",
    "12:00:04  4 of 4 NO-OP operation dev_marts_build.daily_revenue ...... [NO-OP in 0.0s]",
    "12:00:05  1 of 1 START hook: marketplace.on-run-end.0 ............ [RUN]",
    "12:00:05  1 of 1 OK hook: marketplace.on-run-end.0 ............... [OK in 0.1s]",
    "12:00:05  Done. PASS=0 WARN=0 ERROR=1 SKIP=1 TOTAL=4",
]


def test_progress_counts_ended_nodes_and_failures_and_says_so_at_most_every_few_seconds():
    said: list[str] = []
    now = [0.0]
    progress = DbtProgress(said.append, every=5.0, clock=lambda: now[0])
    for line in LINES[:5]:  # 2 of 4 nodes end within 4 s: nothing said yet
        progress(line)
        now[0] += 1.0
    assert said == []
    now[0] += 1.0  # 5 s after the start
    progress(LINES[5])
    assert said == ["3/4 nodes done (2 failed)"]
    for line in LINES[6:]:
        progress(line)
    assert said[-1] == "4/4 nodes done (2 failed)", "the last node is always said"
    assert progress.done == 4, "the hooks' own count is not the nodes'"


def test_stream_hands_over_each_line_while_the_child_runs_and_keeps_the_output():
    seen: list[str] = []
    code = "import sys, time\nfor i in range(3):\n    print(i, flush=True)\n" \
           "print('oops', file=sys.stderr)\nsys.exit(4)"
    result = children.stream([sys.executable, "-c", code], seen.append)
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 4
    assert seen == ["0", "1", "2", "oops"]
    assert result.stdout == "0\n1\n2\noops\n"
