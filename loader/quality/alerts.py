"""Alerts for failures and anomalies. Slack gets elementary's own alerts (`edr monitor`, which
remembers what it sent); the project sends what edr cannot: e-mail, and a generic JSON
webhook, each check at most once per channel within the suppression interval."""

from __future__ import annotations

import hashlib
import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import loader.quality.elementary as elementary
import loader.quality.store as store
from loader import schemas
from loader.config import Settings
from loader.quality.results import CheckResult

if TYPE_CHECKING:
    from loader.quality.report import QualityReport

TIMEOUT_S = 10


@dataclass
class AlertOutcome:
    """What send_alerts did: per channel sent / failed (with why) / skipped."""

    alerted: list[str] = field(default_factory=list)  # check ids sent on some channel
    suppressed: list[str] = field(default_factory=list)  # sent recently: not repeated
    channels: dict[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> dict[str, str]:
        return {c: s for c, s in self.channels.items() if s.startswith("failed")}


def alertable(checks: list[CheckResult], level: str) -> list[CheckResult]:
    """Failures, errors and anomalies; with level `warn`, every warning too."""
    return [
        c
        for c in checks
        if c.status in ("fail", "error")
        or (c.status == "warn" and (level == "warn" or c.category == "anomaly"))
    ]


def fingerprint(check: CheckResult) -> str:
    return hashlib.sha256(f"{check.check_id}|{check.status}".encode()).hexdigest()[:32]


def report_link(settings: Settings, report: QualityReport) -> str:
    return settings.quality.report_url or report.html_path.resolve().as_uri()


def _where(url: str) -> str:
    """A webhook URL's host only: the path of a Slack webhook is its secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def post_json(url: str, payload: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "marketplace-elt"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{_where(url)} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"{_where(url)} unreachable: {reason}") from None


def _headline(report: QualityReport, checks: list[CheckResult]) -> str:
    failing = sum(c.status in ("fail", "error") for c in checks)
    return (
        f"Data quality: {failing} failing, {len(checks) - failing} warning or anomalous "
        f"check(s) — {report.summary()}"
    )


def webhook_payload(report: QualityReport, checks: list[CheckResult], link: str) -> dict:
    return {
        "event": "data_quality_alert",
        "run_id": report.run_id,
        "generated_at": report.generated_at.isoformat(),
        "summary": report.counts,
        "report_url": link,
        "checks": [
            {
                k: getattr(c, k)
                for k in (
                    "check_id",
                    "category",
                    "name",
                    "status",
                    "message",
                    "table",
                    "failing_rows",
                )
            }
            for c in checks
        ],
    }


def email_message(
    settings: Settings, report: QualityReport, checks: list[CheckResult], link: str
) -> EmailMessage:
    q = settings.quality
    msg = EmailMessage()
    msg["Subject"] = f"[elt {settings.env}] {_headline(report, checks)}"
    msg["From"] = q.email_from
    msg["To"] = ", ".join(q.email_to)
    body = [_headline(report, checks), ""]
    body += [f"[{c.status.upper()}] {c.name}: {c.message}" for c in checks]
    body += ["", f"Report: {link}", f"Run: {report.run_id}"]
    msg.set_content("\n".join(body))
    return msg


def send_email(settings: Settings, msg: EmailMessage) -> None:
    q = settings.quality
    try:
        with smtplib.SMTP(q.smtp_host, q.smtp_port, timeout=TIMEOUT_S) as smtp:
            if q.smtp_starttls:
                smtp.starttls()
            if q.smtp_user:
                smtp.login(q.smtp_user, q.smtp_password)
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise RuntimeError(f"SMTP {q.smtp_host}:{q.smtp_port} failed: {exc}") from None


def _recently_sent(conn, channel: str, prints: list[str], minutes: int) -> set[str]:
    if minutes <= 0 or not prints:
        return set()
    with conn.cursor() as cur:
        cur.execute(
            """select distinct fingerprint from quality.alert_log
               where channel = %s and fingerprint = any(%s)
                 and sent_at > now() - make_interval(mins => %s)""",
            (channel, prints, minutes),
        )
        return {r[0] for r in cur.fetchall()}


def send_alerts(
    settings: Settings, report: QualityReport, slack: Callable[[Settings], str] | None = None
) -> AlertOutcome:
    """`edr monitor` to Slack (`slack` stands in for it in tests), then the report's failures
    and anomalies to the webhook and e-mail when configured. A check already
    sent on a channel within ELT_ALERT_SUPPRESS_MINUTES is not sent there again; a channel
    that fails is reported in the outcome, never raised, so alerts cannot fail a run."""
    q = settings.quality
    outcome = AlertOutcome()
    outcome.channels["slack"] = (slack or elementary.send_slack_alerts)(settings)
    candidates = alertable(report.checks, q.alert_level)
    channels = {
        "webhook": bool(q.webhook_url),
        "email": bool(q.smtp_host and q.email_to),
    }
    if not candidates:
        outcome.channels.update(
            {c: "nothing to alert" if on else "not configured" for c, on in channels.items()}
        )
        return outcome
    link = report_link(settings, report)
    conn = store.connect(settings.warehouse)
    try:
        schemas.ensure(conn, "quality")
        sent_ids: set[str] = set()
        suppressed_ids: set[str] = set()
        for channel, configured in channels.items():
            if not configured:
                outcome.channels[channel] = "not configured"
                continue
            prints = {fingerprint(c): c for c in candidates}
            recent = _recently_sent(conn, channel, list(prints), q.suppress_minutes)
            fresh = [c for p, c in prints.items() if p not in recent]
            suppressed_ids |= {prints[p].check_id for p in recent}
            if not fresh:
                outcome.channels[channel] = "suppressed (all sent recently)"
                continue
            try:
                if channel == "webhook":
                    post_json(q.webhook_url, webhook_payload(report, fresh, link))
                else:
                    send_email(settings, email_message(settings, report, fresh, link))
            except RuntimeError as exc:
                outcome.channels[channel] = f"failed: {exc}"
                continue
            store.insert_rows(
                conn,
                "quality.alert_log",
                ("fingerprint", "channel", "run_id"),
                [(fingerprint(c), channel, report.run_id) for c in fresh],
            )
            outcome.channels[channel] = f"sent {len(fresh)} check(s)"
            sent_ids |= {c.check_id for c in fresh}
        outcome.alerted = sorted(sent_ids)
        outcome.suppressed = sorted(suppressed_ids - sent_ids)
        return outcome
    finally:
        conn.close()
