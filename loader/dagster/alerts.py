"""Every failed Dagster run of the pipeline alerts the ELT_ALERT_* channels, as every failed
`elt run` does, with the same message and suppression (loader.orchestrate.notify)."""

import dagster as dg
from dagster_shared.error import SerializableErrorInfo

from loader.config import Settings
from loader.dagster.resources import EltResource
from loader.orchestrate.notify import RunAlert, send_run_alert


def failure_alert(context: dg.RunFailureSensorContext, settings: Settings) -> RunAlert:
    """The failed steps and their errors (the error's cause, where Dagster wrapped it)."""
    failed = {}
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error if event.step_failure_data else None
        failed[event.step_key or "run"] = _message(error) if error else event.message
    if not failed:
        failed = {"run": context.failure_event.message or "the run failed"}
    link = settings.quality.report_url or str(settings.quality.reports_dir / "elementary.html")
    return RunAlert(f"dagster:{context.dagster_run.run_id[:8]}", "failed", failed, [], link)


def _message(error: SerializableErrorInfo) -> str:
    # Dagster wraps what a step raised in an error of its own: its cause is the one that helps
    while error.cause is not None and "Error occurred while executing" in error.message:
        error = error.cause
    return error.message.strip()


@dg.run_failure_sensor(name="alert_on_failed_run",
                       default_status=dg.DefaultSensorStatus.RUNNING)
def alert_on_failed_run(context: dg.RunFailureSensorContext, elt: EltResource) -> None:
    settings = elt.settings()
    sent = send_run_alert(settings, failure_alert(context, settings))
    if sent:
        context.log.info("run alert: " + "; ".join(f"{k} {v}" for k, v in sent.items()))
