"""What a failed run does: raw that still differs fails it loudly, every failed run alerts on
every channel, whatever task failed, and the next good run says the pipeline recovered."""

from __future__ import annotations

import dataclasses
import json

import pytest

from loader.extract import settle
from loader.extract.results import LoadError
from loader.orchestrate import dbt, job, tasks
from loader.orchestrate.dbt import DbtFailed
from tests.conftest import query
from tests.integration.test_faults import NOW, _execute, commit_a_copy_of_row_one, elt, fresh
from tests.integration.test_quality_alerts import configured

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(settings, elt_env, tmp_path_factory):
    s, env = fresh(settings, elt_env, tmp_path_factory.mktemp("rf"), "runfail", scale=0.002)
    assert job.run_job(s, job.RunOptions(base_delay=0.01), echo=lambda _: None) == 0
    return s, env


def channels(box) -> dict[str, list]:
    """The runner's run alerts per channel (on Slack, edr monitor's data alerts, which a
    successful run's alerts task sends there too, carry attachments, not a text line)."""
    return {
        "slack": [p for path, p in box.posts
                  if path.startswith("/services/") and "attachments" not in p],
        "webhook": [p for path, p in box.posts if path == "/hook"],
        "email": list(box.mails),
    }


def run(s, box_ports) -> tuple[int, list[str]]:
    _, http_port, smtp_port = box_ports
    printed: list[str] = []
    code = job.run_job(configured(s, http_port, smtp_port), job.RunOptions(base_delay=0.01),
                       echo=printed.append)
    return code, printed


def last_run(s) -> tuple:
    return query(s.warehouse, "select run_id, status, error, summary from ops.pipeline_runs "
                              "order by started_at desc limit 1")[0]


def test_a_difference_the_repair_cannot_remove_fails_the_run_and_alerts(
    built, inbox, monkeypatch
):
    s, env = built
    box = inbox[0]
    _execute(s.warehouse, "delete from raw_marketplace.orders where order_id in (5, 6, 7)")

    def failing_repair(*args, **kwargs):
        raise LoadError("the re-extract failed (injected)")

    monkeypatch.setattr(settle, "repair_ranges", failing_repair)
    code, printed = run(s, inbox)
    assert code == 1
    assert any("FAILED" in line for line in printed)
    assert not any("SUCCESS" in line for line in printed)
    run_id, status, error, _ = last_run(s)
    assert status == "failed" and "orders" in error and "re-extract failed" in error
    status_json = json.loads(elt(env, "status", "--json").stdout)
    assert status_json["runs"]["last"][0]["status"] == "failed"
    assert "orders" in status_json["runs"]["last"][0]["error"]
    sent = channels(box)
    assert [len(v) for v in sent.values()] == [1, 1, 1], sent
    assert run_id in sent["slack"][0]["text"] and "load_wave_2" in sent["slack"][0]["text"]
    assert sent["webhook"][0]["event"] == "run_failed"
    assert "dbt_build" in sent["webhook"][0]["skipped_tasks"]
    assert b"re-extract failed" in sent["email"][0]


def test_a_repair_that_succeeds_is_counted_and_the_run_says_it_recovered(
    built, inbox
):
    s, _ = built
    box = inbox[0]
    code, printed = run(s, inbox)  # the rows deleted by hand above are still missing
    assert code == 0, printed
    summary = last_run(s)[3]
    orders = summary["tables"]["orders"]
    assert orders["repaired"] >= 3, "the key range of the three rows was extracted again"
    assert orders["reconciled"] is True
    assert orders["raw_rows"] == query(s.source, "select count(*) from marketplace.orders")[0][0]
    assert any(f"{orders['repaired']} repaired" in line for line in printed), printed
    sent = channels(box)
    assert [len(v) for v in sent.values()] == [1, 1, 1]
    assert sent["webhook"][0]["event"] == "run_recovered"
    assert "recovered" in sent["slack"][0]["text"]


@pytest.mark.parametrize("failing", ["build", "source"])
def test_a_failed_dbt_build_or_freshness_check_alerts_every_channel(
    built, inbox, monkeypatch, failing
):
    s, _ = built
    box = inbox[0]
    commit_a_copy_of_row_one(s, "orders", "order_id", NOW)  # something for dbt to build
    real = tasks.run_dbt

    def run_dbt(settings, *args, **kwargs):
        if args[0] == failing:
            raise DbtFailed(f"`dbt {failing}` failed (exit 1): injected")
        return real(settings, *args, **kwargs)

    monkeypatch.setattr(tasks, "run_dbt", run_dbt)  # the build
    monkeypatch.setattr(dbt, "run_dbt", run_dbt)  # the freshness check and the publish
    code, _ = run(s, inbox)
    assert code == 1
    task = "dbt_build" if failing == "build" else "dbt_freshness"
    sent = channels(box)
    assert [len(v) for v in sent.values()] == [1, 1, 1], sent
    assert task in sent["webhook"][0]["failed_tasks"]
    monkeypatch.undo()
    code, _ = run(s, inbox)
    assert code == 0
    assert [p["event"] for p in channels(box)["webhook"]] == ["run_failed", "run_recovered"]


def test_a_channel_that_is_down_does_not_change_the_exit_code(built, monkeypatch):
    s, _ = built
    quality = dataclasses.replace(s.quality, webhook_url="http://127.0.0.1:9/down",
                                  suppress_minutes=0)
    down = dataclasses.replace(s, quality=quality)
    from loader.orchestrate import notify

    slept: list[float] = []
    alert = notify.RunAlert("r1", "failed", {"load_wave_1": "LoadError: x"}, [], "link")
    assert notify.send_run_alert(down, alert, sleep=slept.append)["webhook"].startswith(
        "failed: "
    )
    assert slept == [1.0, 2.0], "retried with backoff"
