"""Alerts reach a local JSON webhook server and a local SMTP server, once per suppression
interval; Slack is edr's (`edr monitor`, tested in test_quality_report.py), called here
through a stand-in that records it was asked."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loader.config import Settings
from loader.quality import QualityReport, send_alerts
from loader.quality.results import CheckResult
from tests.conftest import create_database, free_port


@pytest.fixture(scope="module")
def alert_settings(settings: Settings) -> Settings:
    create_database(settings, "quality_alerts")
    return dataclasses.replace(
        settings, warehouse=settings.warehouse.with_database("quality_alerts")
    )


def configured(settings: Settings, http_port: int, smtp_port: int, **extra) -> Settings:
    quality = dataclasses.replace(
        settings.quality,
        slack_webhook_url=f"http://127.0.0.1:{http_port}/services/T000/B000/secret",
        webhook_url=f"http://127.0.0.1:{http_port}/hook",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        email_from="elt@example.com",
        email_to=("oncall@example.com",),
        report_url="https://reports.example.com/quality.html",
        **{"suppress_minutes": 60, **extra},
    )
    return dataclasses.replace(settings, quality=quality)


def report(run_id: str, *checks: CheckResult) -> QualityReport:
    return QualityReport(
        run_id,
        datetime.now(UTC),
        list(checks),
        Path("/tmp/quality.html"),
        Path("/tmp/quality.json"),
    )


FAILING = CheckResult("dbt:test.x.unique_orders", "schema", "unique_orders", "fail", "3 rows")
ANOMALY = CheckResult(
    "anomaly:raw.orders:volume", "anomaly", "raw.orders: rows per day", "warn", "1 anomalous day"
)
WARNING = CheckResult("dbt:test.x.valid_email", "business rules", "valid_email", "warn", "7 rows")
PASSING = CheckResult("dbt:test.x.not_null_orders_order_id", "schema", "ids", "pass")


def edr_stand_in(calls: list) -> object:
    def monitor(settings: Settings) -> str:
        calls.append(settings.quality.slack_webhook_url)
        return "sent by edr monitor"

    return monitor


def test_failures_and_anomalies_reach_every_channel_with_the_report_link(
    alert_settings: Settings, inbox
) -> None:
    box, http_port, smtp_port = inbox
    s = configured(alert_settings, http_port, smtp_port)
    calls: list = []
    outcome = send_alerts(s, report("r1", FAILING, ANOMALY, WARNING, PASSING), edr_stand_in(calls))
    assert outcome.channels == {
        "slack": "sent by edr monitor",
        "webhook": "sent 2 check(s)",
        "email": "sent 2 check(s)",
    }
    assert calls == [s.quality.slack_webhook_url]
    posts = dict(box.posts)
    hook = posts["/hook"]
    assert {c["check_id"] for c in hook["checks"]} == {FAILING.check_id, ANOMALY.check_id}
    assert hook["report_url"] == "https://reports.example.com/quality.html"
    (mail,) = box.mails
    text = mail.decode()
    assert "To: oncall@example.com" in text and "unique_orders" in text
    assert "https://reports.example.com/quality.html" in text
    assert "valid_email" not in text  # a plain warning is not alerted at level fail


def test_a_repeat_within_the_interval_is_suppressed_and_a_new_failure_is_not(
    alert_settings: Settings, inbox
) -> None:
    box, http_port, smtp_port = inbox
    s = configured(alert_settings, http_port, smtp_port)
    first = CheckResult("dbt:test.x.repeat", "schema", "repeat", "fail", "1 row")
    send_alerts(s, report("r2", first), edr_stand_in([]))
    again = send_alerts(s, report("r3", first), edr_stand_in([]))
    assert again.suppressed == [first.check_id] and again.alerted == []
    assert len(box.mails) == 1 and len(box.posts) == 1
    new = CheckResult("dbt:test.x.brand_new", "schema", "brand_new", "fail", "2 rows")
    third = send_alerts(s, report("r4", first, new), edr_stand_in([]))
    assert third.alerted == [new.check_id]
    assert [c["check_id"] for c in box.posts[-1][1].get("checks", [])] in ([], [new.check_id])
    assert len(box.mails) == 2 and "brand_new" in box.mails[-1].decode()
    assert "repeat" not in box.mails[-1].decode().split("Subject")[1]


def test_without_suppression_every_run_alerts(alert_settings: Settings, inbox) -> None:
    box, http_port, smtp_port = inbox
    s = configured(alert_settings, http_port, smtp_port, suppress_minutes=0)
    check = CheckResult("dbt:test.x.always", "schema", "always", "error", "boom")
    send_alerts(s, report("r5", check), edr_stand_in([]))
    send_alerts(s, report("r6", check), edr_stand_in([]))
    assert len(box.mails) == 2


def test_a_broken_channel_is_reported_not_raised_and_hides_its_secret(
    alert_settings: Settings, inbox
) -> None:
    box, http_port, smtp_port = inbox
    s = configured(alert_settings, http_port, smtp_port)
    s = dataclasses.replace(
        s,
        quality=dataclasses.replace(
            s.quality,
            webhook_url=f"http://127.0.0.1:{free_port()}/closed/secret-token",
        ),
    )
    check = CheckResult("dbt:test.x.broken_channel", "schema", "broken", "fail", "x")
    outcome = send_alerts(s, report("r7", check), lambda _: "failed: edr monitor: HTTP 500")
    assert outcome.channels["slack"] == "failed: edr monitor: HTTP 500"
    assert outcome.channels["webhook"].startswith("failed: ")
    assert "secret-token" not in outcome.channels["webhook"]
    assert outcome.channels["email"] == "sent 1 check(s)"
    # the failed channels did not record a send: the next run tries them again
    s_ok = configured(alert_settings, http_port, smtp_port)
    retry = send_alerts(s_ok, report("r8", check), edr_stand_in([]))
    assert retry.channels["webhook"] == "sent 1 check(s)"
    assert retry.channels["email"] == "suppressed (all sent recently)"


def test_nothing_to_alert_sends_nothing(alert_settings: Settings, inbox) -> None:
    box, http_port, smtp_port = inbox
    outcome = send_alerts(
        configured(alert_settings, http_port, smtp_port), report("r9", PASSING, WARNING),
        edr_stand_in([]),
    )
    assert not box.posts and not box.mails and outcome.alerted == []
