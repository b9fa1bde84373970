"""elementary's CLI (`edr`): the HTML report people open, and its alerts to Slack.

edr runs dbt on a project inside its wheel (elementary/monitor/dbt_project) that needs
dbt_utils 0.8.x and elementary's package. Its packages go to $ELT_HOME/edr/dbt_packages
(edr's DBT_PACKAGES_FOLDER), installed like the project's own (loader/packages.py: from the
mirror offline, `dbt deps` online), so the shared virtualenv is never written to. edr's
settings live in $ELT_HOME/edr/.edr/config.yml, with anonymous tracking and the PyPI version
check off; the Slack webhook, a secret, is written there (mode 600), never on a command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from loader import children
from loader.config import PROJECT_ROOT, Settings, UserError, dbt_environment
from loader.packages import ensure_packages

TIMEOUT_S = 900


class ElementaryUnavailable(UserError, RuntimeError):
    """edr is missing or failed; the message says what to do."""


@dataclass(frozen=True)
class EdrOutcome:
    ok: bool
    message: str


def edr_executable() -> str:
    found = shutil.which("edr", path=str(Path(sys.executable).parent)) or shutil.which("edr")
    if found is None:
        raise ElementaryUnavailable(
            "elementary's CLI `edr` is not installed: `pip install elementary-data==0.25.1` "
            "(a dependency of this project: `make install`)"
        )
    return found


def internal_project() -> Path:
    """The dbt project edr runs its queries in, inside the elementary-data wheel."""
    from elementary.monitor.dbt_project_utils import CLI_DBT_PROJECT_PATH

    return Path(CLI_DBT_PROJECT_PATH)


def _config(settings: Settings) -> dict:
    config: dict = {
        "anonymous_usage_tracking": False,
        "disable_elementary_version_check": True,
        "disable_elementary_logo_print": True,
        # packages are installed here beforehand (offline: from the mirror)
        "run_dbt_deps_if_needed": False,
    }
    if settings.quality.slack_webhook_url:
        config["slack"] = {"notification_webhook": settings.quality.slack_webhook_url}
    return config


def edr_environment(settings: Settings) -> dict[str, str]:
    """edr's environment: its packages installed, its config written, the profile's variables.
    HOME is edr's own folder: edr reads ~/.edr/config.yml before it parses its flags."""
    work = settings.home / "edr"
    env = {
        # not the project's target and log folders, if set: edr's own dbt project would
        # overwrite the project's run_results.json and partial parse state there
        **{k: v for k, v in os.environ.items() if k not in ("DBT_TARGET_PATH", "DBT_LOG_PATH")},
        **dbt_environment(settings),
        "HOME": str(work),
        "DBT_PACKAGES_FOLDER": str(work / "dbt_packages"),
        "EDR_INTERNAL_TARGET_PATH": str(work / "target"),
    }
    ensure_packages(
        internal_project(), settings.dbt_packages_mirror, work / "dbt_packages", env=env
    )
    config = work / ".edr" / "config.yml"
    config.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(_config(settings), out)
    return env


def _edr(settings: Settings, command: str, *args: str) -> EdrOutcome:
    env = edr_environment(settings)
    work = settings.home / "edr"
    done = children.run(
        [
            edr_executable(),
            command,
            "--project-dir",
            str(PROJECT_ROOT),
            "--profiles-dir",
            str(PROJECT_ROOT / "profiles"),
            "--profile-target",
            settings.env,
            "--target-path",
            str(work / "edr_target"),
            "--env",
            settings.env,
            *args,
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:])
    return EdrOutcome(done.returncode == 0, tail)


def write_report(settings: Settings, path: Path) -> EdrOutcome:
    """`edr report`: elementary's HTML report (test results, monitors, lineage) at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    outcome = _edr(
        settings,
        "report",
        "--file-path",
        str(path.resolve()),
        "--open-browser",
        "false",
        "--project-name",
        "marketplace",
    )
    if outcome.ok and not path.exists():
        return EdrOutcome(False, f"edr report exited 0 but wrote no {path}")
    return outcome


def send_slack_alerts(settings: Settings) -> str:
    """`edr monitor`: elementary's alerts (failed tests, anomalies, schema changes, model
    errors) to the Slack webhook; edr remembers what it sent. A state for AlertOutcome."""
    if not settings.quality.slack_webhook_url:
        return "not configured"
    try:
        outcome = _edr(settings, "monitor", *(
            ["--report-url", settings.quality.report_url] if settings.quality.report_url else []
        ))
    except (UserError, OSError, subprocess.TimeoutExpired) as exc:  # no edr, no packages
        return f"failed: {exc}"
    if outcome.ok:
        return "sent by edr monitor"
    last = outcome.message.splitlines()[-1] if outcome.message else "no output"
    return f"failed: edr monitor: {last}"
