"""Quality settings from the environment and the monitors file."""

from __future__ import annotations

from pathlib import Path

import pytest

from loader.config import ConfigError, load_settings
from loader.quality.monitors import MonitorConfigError, for_environment, load_quality_config


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


def test_the_shipped_monitors_file_loads() -> None:
    config = load_quality_config(load_settings({}).quality.monitors_config)
    assert config.monitors and config.profiles and config.completeness


def test_an_unknown_column_metric_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text("monitors:\n  - {table: a.b, timestamp: t, columns: {x: [median]}}\n")
    with pytest.raises(MonitorConfigError, match="median"):
        load_quality_config(path)


def test_profiling_refresh_and_stamped_tables_come_from_the_monitors_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text("profiling: {refresh_days: 3, stamped: [raw, marts.fct_orders]}\n")
    profiling = load_quality_config(path).profiling
    assert profiling.refresh_days == 3 and profiling.refresh_changed_pct == 10
    assert profiling.is_stamped("raw.orders") and profiling.is_stamped("marts.fct_orders")
    assert not profiling.is_stamped("marts.dim_customers")


def test_the_shipped_file_does_not_trust_the_dimensions_loaded_at() -> None:
    profiling = load_quality_config(load_settings({}).quality.monitors_config).profiling
    assert profiling.is_stamped("raw_marketplace.orders")
    assert profiling.is_stamped("marts.fct_orders")
    assert not profiling.is_stamped("marts.dim_customers")


@pytest.mark.parametrize("env", ["dev", "staging"])
def test_the_report_reads_the_marts_of_its_own_environment(env: str) -> None:
    """monitors.yml names prod's schemas; under ELT_ENV=dev (or staging) the report profiles
    and watches dev_marts (staging_marts), and the loader's shared raw dataset keeps its
    name."""
    shipped = load_quality_config(load_settings({}).quality.monitors_config)
    assert for_environment(shipped, "prod") == shipped
    other = for_environment(shipped, env)
    assert f"{env}_marts.fct_orders" in other.profiles
    assert not [t for t in other.profiles if t.startswith("marts.")]
    assert "raw_marketplace.orders" in other.profiles
    assert other.completeness.keys() == shipped.completeness.keys()  # raw only
    assert [m.table for m in other.monitors] == [
        t.replace("marts.", f"{env}_marts.", 1) if t.startswith("marts.") else t
        for t in (m.table for m in shipped.monitors)
    ]
    assert other.profiling.is_stamped(f"{env}_marts.fct_orders")
    assert other.profiling.is_stamped("raw_marketplace.orders")
    assert not other.profiling.is_stamped(f"{env}_marts.dim_customers")
