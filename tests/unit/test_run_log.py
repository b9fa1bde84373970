"""The run log's terminal lines say what a task's count counts; its JSON lines keep `rows`."""

import io
import json

import pytest

from loader.orchestrate.logs import RunLog


def logged(tmp_path, task: str, count: int | None) -> tuple[str, dict]:
    stream = io.StringIO()
    log = RunLog(tmp_path / "runs.jsonl", "run-1", secrets=[], stream=stream)
    log.event("success", task=task, rows=count, duration_s=1.0, status="success")
    record = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[-1])
    return stream.getvalue(), record


@pytest.mark.parametrize(
    ("task", "count", "label"),
    [
        ("load_wave_1", 12345, "(12,345 rows)"),
        ("source_init", 660000, "(660,000 rows)"),
        ("simulate", 2, "(2 days)"),
        ("dbt_build", 190, "(190 tests)"),
        ("report", 253, "(253 checks)"),
        ("alerts", 2, "(2 alerts sent)"),
        ("alerts", 1, "(1 alert sent)"),
        ("load_wave_2", 1, "(1 row)"),
    ],
)
def test_the_terminal_line_names_what_the_task_counted(tmp_path, task, count, label):
    line, record = logged(tmp_path, task, count)
    assert f"success {label} in 1.0s" in line
    assert record["rows"] == count  # the JSON field is unchanged for log readers


def test_dbt_build_and_report_are_not_counted_in_rows(tmp_path):
    for task in ("dbt_build", "report", "alerts"):
        line, _ = logged(tmp_path, task, 190)
        assert "rows" not in line, line


def test_freshness_prints_no_meaningless_count(tmp_path):
    line, record = logged(tmp_path, "dbt_freshness", 0)
    assert "(0" not in line and "success in 1.0s" in line
    assert record["rows"] == 0


def test_an_event_without_a_count_prints_none(tmp_path):
    line, record = logged(tmp_path, "dbt_build", None)
    assert "(" not in line and record["rows"] is None
