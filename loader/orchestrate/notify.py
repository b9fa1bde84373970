"""Run alerts: every failed run, and the first good run after a failure, reach every
configured channel (Slack, webhook, e-mail), whatever task failed.

The quality alerts (loader/quality/alerts.py) come from the report, which runs only after a
good build; a failed load or build skips it, and the people who most need an alert would get
none. These messages come from the runner itself, after the run is recorded. A failure of
one kind (task and error type) is sent once per channel within ELT_ALERT_SUPPRESS_MINUTES; a
channel that is down is retried, then logged: alerting never changes the run's exit code."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from loader import schemas
from loader.config import Settings
from loader.quality import store
from loader.quality.alerts import post_json, send_email

log = logging.getLogger(__name__)

ATTEMPTS = 3  # per channel, with a pause that doubles
ERROR_LINES = 5


@dataclass
class RunAlert:
    """What one message says about a run."""

    run_id: str
    status: str  # failed or recovered
    failed: dict[str, str] = field(default_factory=dict)  # task -> error
    skipped: list[str] = field(default_factory=list)
    link: str = ""

    @property
    def kind(self) -> str:
        """What suppression groups by: the failed tasks and their errors' types."""
        if self.status != "failed":
            return f"run {self.status}"
        return "run failed: " + ", ".join(
            f"{task} ({error.split(':', 1)[0]})" for task, error in sorted(self.failed.items())
        )

    @property
    def headline(self) -> str:
        if self.status != "failed":
            return f"elt run {self.run_id} succeeded: the pipeline recovered"
        return f"elt run {self.run_id} FAILED in {', '.join(self.failed)}"

    def text(self) -> str:
        lines = [self.headline]
        for task, error in self.failed.items():
            lines.append(f"{task}:")
            lines += ["    " + line for line in error.strip().splitlines()[:ERROR_LINES]]
        if self.skipped:
            lines.append(f"skipped: {', '.join(self.skipped)}")
        lines.append(f"details: `elt status`, {self.link}")
        return "\n".join(lines)


def _fingerprint(alert: RunAlert) -> str:
    return hashlib.sha256(alert.kind.encode()).hexdigest()[:32]


def _channels(settings: Settings) -> dict[str, Callable[[RunAlert], None]]:
    q = settings.quality
    channels: dict[str, Callable[[RunAlert], None]] = {}
    if q.slack_webhook_url:
        channels["slack"] = lambda a: post_json(q.slack_webhook_url, {"text": a.text()})
    if q.webhook_url:
        channels["webhook"] = lambda a: post_json(
            q.webhook_url,
            {
                "event": "run_" + a.status,
                "run_id": a.run_id,
                "failed_tasks": a.failed,
                "skipped_tasks": a.skipped,
                "details": a.link,
            },
        )
    if q.smtp_host and q.email_to:

        def email(a: RunAlert) -> None:
            msg = EmailMessage()
            msg["Subject"] = f"[elt {settings.env}] {a.headline}"
            msg["From"] = q.email_from
            msg["To"] = ", ".join(q.email_to)
            msg.set_content(a.text())
            send_email(settings, msg)

        channels["email"] = email
    return channels


def send_run_alert(
    settings: Settings, alert: RunAlert, sleep: Callable[[float], None] = time.sleep
) -> dict[str, str]:
    """Send `alert` to every configured channel; returns what happened per channel. Never
    raises: a failure is logged and reported in the returned states."""
    outcome: dict[str, str] = {}
    channels = _channels(settings)
    if not channels:
        return outcome
    minutes = settings.quality.suppress_minutes
    try:
        conn = store.connect(settings.warehouse)
    except Exception as exc:  # noqa: BLE001 - the warehouse may be what failed: send anyway
        log.warning("run alert: no warehouse to record it in (%s)", exc)
        conn = None
    try:
        if conn is not None:
            schemas.ensure(conn, "quality")
        for channel, send in channels.items():
            if conn is not None and alert.status == "failed" and _sent_recently(
                conn, channel, _fingerprint(alert), minutes
            ):
                outcome[channel] = "suppressed (sent recently)"
                continue
            outcome[channel] = _send_with_retries(channel, send, alert, sleep)
            if conn is not None and outcome[channel] == "sent":
                store.insert_rows(conn, "quality.alert_log", ("fingerprint", "channel", "run_id"),
                                  [(_fingerprint(alert), channel, alert.run_id)])
    finally:
        if conn is not None:
            conn.close()
    return outcome


def _send_with_retries(
    channel: str, send: Callable[[RunAlert], None], alert: RunAlert, sleep: Callable
) -> str:
    delay = 1.0
    for attempt in range(1, ATTEMPTS + 1):
        try:
            send(alert)
            return "sent"
        except Exception as exc:  # noqa: BLE001 - alerting must not fail the run
            log.warning("run alert to %s failed (attempt %d of %d): %s", channel, attempt,
                        ATTEMPTS, exc)
            if attempt == ATTEMPTS:
                return f"failed: {exc}"
            sleep(delay)
            delay *= 2
    return "failed"


def _sent_recently(conn, channel: str, fingerprint: str, minutes: int) -> bool:
    if minutes <= 0:
        return False
    with conn.cursor() as cur:
        cur.execute(
            "select exists (select from quality.alert_log where channel = %s and "
            "fingerprint = %s and sent_at > now() - make_interval(mins => %s))",
            (channel, fingerprint, minutes),
        )
        return bool(cur.fetchone()[0])
