"""The run log's terminal lines say what a task's count counts; its JSON lines keep `rows`;
warnings logged through stdlib logging during a run land in it."""

import io
import json
import logging

import pytest

from loader.orchestrate.logs import Event, RunLog, setup_logging, stop_logging


def logged(tmp_path, task: str, count: int | None) -> tuple[str, dict]:
    stream = io.StringIO()
    log = RunLog(tmp_path / "runs.jsonl", "run-1", secrets=[], stream=stream)
    log.event(Event("success", task=task, rows=count, duration_s=1.0, status="success"))
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


def test_a_warning_logged_during_the_run_lands_in_the_json_log_and_on_stderr(tmp_path, capsys):
    log = RunLog(tmp_path / "runs.jsonl", "run-7", secrets=["s3cret"])
    setup_logging(log)
    try:
        logging.getLogger("loader.x").warning("retrying %s with s3cret", "the load",
                                              extra={"attempt": 2})
        logging.getLogger("loader.x").info("not at info")
        logging.getLogger("dlt").error("a library's error")
    finally:
        stop_logging()
    logging.getLogger("loader.x").warning("after the run")
    records = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [(r["level"], r["run_id"], r["logger"], r["message"]) for r in records] == [
        ("warning", "run-7", "loader.x", "retrying the load with ***"),
        ("error", "run-7", "dlt", "a library's error"),
    ]
    assert records[0]["attempt"] == 2
    terminal = capsys.readouterr().err
    assert "WARNING loader.x: retrying the load with *** attempt=2" in terminal
    assert "not at info" not in terminal and "after the run" not in terminal


def test_a_second_setup_replaces_the_first_runs_handler(tmp_path):
    first = RunLog(tmp_path / "a.jsonl", "run-a", secrets=[], stream=io.StringIO())
    second = RunLog(tmp_path / "b.jsonl", "run-b", secrets=[], stream=io.StringIO())
    setup_logging(first)
    setup_logging(second)
    try:
        logging.getLogger("loader.y").warning("once")
    finally:
        stop_logging()
    assert not (tmp_path / "a.jsonl").exists()
    assert json.loads((tmp_path / "b.jsonl").read_text())["run_id"] == "run-b"
