"""Quality settings from the environment."""

from __future__ import annotations

import pytest

from loader.config import ConfigError, load_settings


def test_quality_settings_come_from_the_environment() -> None:
    q = load_settings(
        {
            "ELT_QUALITY_RETENTION_DAYS": "30",
            "ELT_ALERT_SUPPRESS_MINUTES": "15",
            "ELT_ALERT_EMAIL_TO": "a@x.com, b@x.com",
            "ELT_ALERT_SMTP_STARTTLS": "true",
            "ELT_ALERT_SMTP_PASSWORD": "hunter2",
            "ELT_ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/secret",
        }
    ).quality
    assert (q.retention_days, q.suppress_minutes, q.email_to) == (30, 15, ("a@x.com", "b@x.com"))
    assert q.smtp_starttls
    assert "hunter2" not in repr(q) and "secret" not in repr(q)


def test_defaults() -> None:
    q = load_settings({}).quality
    assert q.retention_days == 90 and q.alert_level == "fail" and q.reports_dir.name == "reports"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ELT_QUALITY_RETENTION_DAYS", "0"),
        ("ELT_ALERT_LEVEL", "loud"),
        ("ELT_ALERT_SMTP_STARTTLS", "maybe"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})
