"""The quality report as a Dagster asset downstream of the marts: `elt run`'s `report` and
`alerts` tasks (loader.quality), so Dagster's runs leave the same report and alerts."""

import dagster as dg

from loader.dagster.resources import RETRY_POLICY, EltResource, retried_if_transient

REPORT_KEY = dg.AssetKey(["reports", "quality"])


def build_report_asset(marts: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=REPORT_KEY,
        deps=marts,
        group_name="reports",
        kinds={"html"},
        retry_policy=RETRY_POLICY,
        description="reports/elementary.html and quality.json (ELT_REPORTS_DIR): every check, "
        "profiles and anomalies; failures and anomalies alerted to the ELT_ALERT_* channels",
    )
    def quality_report(context: dg.AssetExecutionContext, elt: EltResource) -> dg.MaterializeResult:
        from loader.quality import build_report, send_alerts

        settings = elt.settings()
        with retried_if_transient():
            report = build_report(settings, progress=context.log.info,
                                  html=settings.quality.html_report)
            alerts = send_alerts(settings, report)
        # like `elt run`'s report task, a failed check is reported and alerted, not a failed
        # step: the marts it reads are published already
        return dg.MaterializeResult(metadata={
            "summary": report.summary(),
            "ok": report.ok,
            "html": dg.MetadataValue.path(str(report.html_path)),
            "alerted": len(alerts.alerted),
        })

    return quality_report
