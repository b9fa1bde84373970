"""Anomaly detection on daily metric series: z-scores with seasonality, distribution shift."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

from loader.quality.monitors import AnomalySettings


@dataclass
class Point:
    day: date
    value: float | None
    expected: float | None = None
    lower: float | None = None
    upper: float | None = None
    z: float | None = None
    in_detection: bool = False
    is_anomaly: bool = False


@dataclass
class Detection:
    """The judged window of one metric: every point, which are anomalous, or why none was."""

    points: list[Point] = field(default_factory=list)
    skipped: str | None = None

    @property
    def anomalies(self) -> list[Point]:
        return [p for p in self.points if p.is_anomaly]

    def as_dict(self) -> dict:
        return {"skipped": self.skipped, "points": [asdict(p) for p in self.points]}


def windows(last_day: date, s: AnomalySettings) -> tuple[date, date, date]:
    """(training start, detection start, last day): detection days are never trained on."""
    detection_start = last_day - timedelta(days=s.detection_days - 1)
    training_start = detection_start - timedelta(days=s.training_days)
    return training_start, detection_start, last_day


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def t_threshold(z: float, dof: int) -> float:
    """The Student-t quantile matching normal quantile `z` (Abramowitz & Stegun 26.7.5): with
    few training points the sample spread is uncertain, so the bound must widen."""
    if dof <= 0:
        return math.inf
    v = float(dof)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )


def zscore_detect(
    series: Mapping[date, float | None],
    last_day: date,
    s: AnomalySettings,
    *,
    seasonality: str | None = None,
    direction: str = "both",
) -> Detection:
    """Judge each detection day against the training days (the same weekday with
    day_of_week seasonality): anomalous when |z| > sensitivity in the watched direction.

    z is measured against the prediction spread std * sqrt(1 + 1/n) and the threshold is the
    t quantile equivalent to `sensitivity` with n - 1 degrees of freedom, so eight Mondays of
    training do not raise the false alarms a plain z-score on them would. A training set
    with no spread flags any change at all."""
    if seasonality not in (None, "day_of_week"):
        raise ValueError(f"unknown seasonality {seasonality!r}: use day_of_week or none")
    training_start, detection_start, _ = windows(last_day, s)
    training = {
        d: v for d, v in series.items() if training_start <= d < detection_start and v is not None
    }
    min_points = s.min_training_points
    if seasonality == "day_of_week":
        min_points = max(2, min_points // 7)
    points = [
        Point(d, v) for d, v in sorted(series.items()) if training_start <= d < detection_start
    ]
    for offset in range(s.detection_days):
        day = detection_start + timedelta(days=offset)
        value = series.get(day)
        sample = [
            v for d, v in training.items() if seasonality is None or d.weekday() == day.weekday()
        ]
        point = Point(day, value, in_detection=True)
        points.append(point)
        if len(sample) < min_points:
            continue
        mean, std = _mean_std(sample)
        std *= math.sqrt(1 + 1 / len(sample))
        threshold = t_threshold(s.sensitivity, len(sample) - 1)
        point.expected = mean
        point.lower, point.upper = mean - threshold * std, mean + threshold * std
        if value is None:
            continue
        if std == 0:
            point.z = 0.0 if value == mean else math.copysign(math.inf, value - mean)
        else:
            point.z = (value - mean) / std
        high, low = point.z > threshold, point.z < -threshold
        point.is_anomaly = (high and direction in ("both", "up")) or (
            low and direction in ("both", "down")
        )
    judged = [p for p in points if p.in_detection and p.expected is not None]
    if not judged:
        return Detection(
            points,
            f"fewer than {min_points} training days"
            + (" per weekday" if seasonality else "")
            + f" in the {s.training_days} days before the detection period",
        )
    return Detection(points)


def _mix(counts: Mapping[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def distribution_shift(
    counts: Mapping[date, Mapping[str, float]], last_day: date, s: AnomalySettings
) -> tuple[Detection, dict[str, float], dict[str, float]]:
    """Each day's category mix against the pooled training mix (total variation distance);
    a detection day is a shift when its distance is a z-score outlier among the training
    days' own distances and at least `min_distribution_shift`.
    Returns the detection, the training mix and the detection period's mix."""
    training_start, detection_start, _ = windows(last_day, s)
    pooled: dict[str, float] = {}
    detected: dict[str, float] = {}
    for d, mix in counts.items():
        target = (
            pooled
            if training_start <= d < detection_start
            else (detected if detection_start <= d <= last_day else None)
        )
        if target is not None:
            for k, v in mix.items():
                target[k] = target.get(k, 0.0) + v
    reference = _mix(pooled)
    distances: dict[date, float | None] = {}
    for d in (
        training_start + timedelta(days=i) for i in range((last_day - training_start).days + 1)
    ):
        day_counts = counts.get(d) or {}
        distances[d] = (
            total_variation(_mix(day_counts), reference) if sum(day_counts.values()) else None
        )
    detection = zscore_detect(distances, last_day, s, direction="up")
    for p in detection.points:
        if p.is_anomaly and (p.value or 0.0) < s.min_distribution_shift:
            p.is_anomaly = False
    return detection, reference, _mix(detected)
