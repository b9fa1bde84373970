"""Anomaly detection on simulated daily histories: injected faults are flagged, a clean
history of the same length raises nothing."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from loader.quality.anomalies import distribution_shift, windows, zscore_detect
from loader.quality.monitors import AnomalySettings

SETTINGS = AnomalySettings(sensitivity=3.0, training_days=56, detection_days=3)
LAST = date(2026, 6, 30)
DAYS = [LAST - timedelta(days=i) for i in range(SETTINGS.training_days + 2, -1, -1)]
WEEKLY = {0: 1.0, 1: 1.0, 2: 1.05, 3: 1.1, 4: 1.2, 5: 1.6, 6: 1.5}  # weekends busier


def orders_per_day(seed: int) -> dict[date, float]:
    rng = random.Random(seed)
    return {d: round(rng.gauss(400 * WEEKLY[d.weekday()], 12)) for d in DAYS}


def null_email_pct(seed: int) -> dict[date, float]:
    rng = random.Random(seed)
    return {d: max(0.0, rng.gauss(2.0, 0.3)) for d in DAYS}


def status_mix(seed: int) -> dict[date, dict[str, float]]:
    rng = random.Random(seed)
    shares = {"delivered": 0.7, "shipped": 0.15, "cancelled": 0.1, "returned": 0.05}
    out = {}
    for d in DAYS:
        counts = dict.fromkeys(shares, 0.0)
        for _ in range(400):
            r, acc = rng.random(), 0.0
            for k, s in shares.items():
                acc += s
                if r < acc:
                    counts[k] += 1
                    break
        out[d] = counts
    return out


def hours_since_newest_row(stall_from: date | None) -> dict[date, float]:
    """A table written every hour; from `stall_from` on, nothing more arrives."""
    out, last_write = {}, None
    for d in DAYS:
        if stall_from is None or d < stall_from:
            last_write = d + timedelta(hours=23)
        end_of_day = d + timedelta(days=1)
        out[d] = (end_of_day - last_write).total_seconds() / 3600 + 0.0
    return {k: v + (hash(k) % 7) / 100 for k, v in out.items()}  # a little jitter


@pytest.mark.parametrize("seed", range(5))
def test_a_clean_history_raises_no_anomaly(seed: int) -> None:
    assert not zscore_detect(
        orders_per_day(seed), LAST, SETTINGS, seasonality="day_of_week"
    ).anomalies
    assert not zscore_detect(null_email_pct(seed), LAST, SETTINGS, direction="up").anomalies
    assert not distribution_shift(status_mix(seed), LAST, SETTINGS)[0].anomalies
    assert not zscore_detect(hours_since_newest_row(None), LAST, SETTINGS, direction="up").anomalies


def test_a_day_with_half_the_orders_is_flagged_on_that_day_only() -> None:
    series = orders_per_day(1)
    series[LAST - timedelta(days=1)] /= 2
    detection = zscore_detect(series, LAST, SETTINGS, seasonality="day_of_week")
    assert [p.day for p in detection.anomalies] == [LAST - timedelta(days=1)]
    assert detection.anomalies[0].z < -3


def test_weekly_seasonality_keeps_a_normal_weekend_from_being_flagged() -> None:
    """A Saturday at 1.6x a Monday is normal with day-of-week seasonality; without it the
    spread of all days is judged and a quiet day in a busy week would hide or show up."""
    series = orders_per_day(2)
    saturday = (
        next(d for d in DAYS[-3:] if d.weekday() == 5)
        if any(d.weekday() == 5 for d in DAYS[-3:])
        else None
    )
    detection = zscore_detect(series, LAST, SETTINGS, seasonality="day_of_week")
    assert not detection.anomalies
    judged = [p for p in detection.points if p.in_detection]
    for p in judged:  # each day is compared with its own weekday
        assert p.expected == pytest.approx(400 * WEEKLY[p.day.weekday()], rel=0.05)
    assert saturday is None or saturday in [p.day for p in judged]


def test_a_spike_in_null_emails_is_flagged() -> None:
    series = null_email_pct(3)
    series[LAST] = 9.0
    detection = zscore_detect(series, LAST, SETTINGS, direction="up")
    assert [p.day for p in detection.anomalies] == [LAST]


def test_a_shifted_status_mix_is_flagged() -> None:
    counts = status_mix(4)
    for d in DAYS[-2:]:
        counts[d] = {"delivered": 200.0, "shipped": 60.0, "cancelled": 120.0, "returned": 20.0}
    detection, training, recent = distribution_shift(counts, LAST, SETTINGS)
    assert {p.day for p in detection.anomalies} == set(DAYS[-2:])
    assert recent["cancelled"] > 2 * training["cancelled"]


def test_a_stalled_table_is_flagged() -> None:
    detection = zscore_detect(
        hours_since_newest_row(LAST - timedelta(days=1)), LAST, SETTINGS, direction="up"
    )
    assert {p.day for p in detection.anomalies} == {LAST - timedelta(days=1), LAST}


def test_the_detection_period_is_kept_out_of_training() -> None:
    """Three fault days in a row: if they were trained on, they would widen the expected
    range and hide each other."""
    series = null_email_pct(5)
    for d in DAYS[-3:]:
        series[d] = 6.0
    detection = zscore_detect(series, LAST, SETTINGS, direction="up")
    assert len(detection.anomalies) == 3
    training_start, detection_start, _ = windows(LAST, SETTINGS)
    assert detection_start == LAST - timedelta(days=2)
    assert all(p.expected == pytest.approx(2.0, abs=0.2) for p in detection.anomalies)


def test_sensitivity_is_the_z_threshold() -> None:
    series = null_email_pct(6)
    series[LAST] = 2.0 + 2.5 * 0.3  # about 2.5 sigma
    assert not zscore_detect(series, LAST, SETTINGS, direction="up").anomalies
    looser = AnomalySettings(sensitivity=2.0, training_days=56, detection_days=3)
    assert zscore_detect(series, LAST, looser, direction="up").anomalies


def test_a_drop_in_an_up_only_metric_is_not_an_anomaly() -> None:
    series = null_email_pct(7)
    series[LAST] = 0.0
    assert not zscore_detect(series, LAST, SETTINGS, direction="up").anomalies
    assert zscore_detect(series, LAST, SETTINGS, direction="both").anomalies


def test_too_little_history_is_skipped_not_guessed() -> None:
    series = {d: v for d, v in orders_per_day(8).items() if d > LAST - timedelta(days=6)}
    detection = zscore_detect(series, LAST, SETTINGS)
    assert detection.skipped and not detection.anomalies
