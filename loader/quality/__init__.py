"""The data quality layer over dbt's tests and elementary's monitors: quality.json and
elementary's report (`elt report`), and alerts. The runner calls `build_report`, then
`send_alerts`."""

from loader.quality.alerts import AlertOutcome, send_alerts
from loader.quality.report import QualityReport, build_report

__all__ = ["AlertOutcome", "QualityReport", "build_report", "send_alerts"]
