"""The data quality layer: checks, profiles, anomaly detection, one results store, the
report (`elt report`) and alerts. The runner calls `build_report` and then `send_alerts`."""

from loader.quality.alerts import AlertOutcome, send_alerts
from loader.quality.report import QualityReport, build_report

__all__ = ["AlertOutcome", "QualityReport", "build_report", "send_alerts"]
