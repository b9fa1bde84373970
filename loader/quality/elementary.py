"""`elt quality elementary`: the opt-in elementary report, for machines that reach the dbt hub.

Elementary's dbt package comes from hub.getdbt.com. The project itself never depends on it
(`dbt build` must work offline), so the package is installed into a separate workspace under
$ELT_HOME/elementary that links the project's models, macros, seeds, snapshots and tests."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from loader import children
from loader.config import PROJECT_ROOT, Settings, UserError, dbt_environment

ELEMENTARY_PACKAGE = {"package": "elementary-data/elementary", "version": [">=0.16.0", "<0.20.0"]}
LINKED = ("models", "macros", "seeds", "snapshots", "tests", "profiles")


class ElementaryUnavailable(UserError, RuntimeError):
    """The dbt hub (or edr) cannot be reached: the message points at the built-in report."""


def hub_reachable(url: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Whether the dbt hub answers; the reason when it does not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read(256)
        return True, "reachable"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, str(getattr(exc, "reason", exc))


def offline_message(url: str, reason: str, report: Path) -> str:
    return (
        f"The dbt hub is not reachable from this machine ({url}: {reason}), so the elementary "
        "dbt package cannot be installed and no elementary report was made.\n"
        f"The built-in quality report covers the same ground: run `elt report` and open "
        f"{report} (JSON beside it)."
    )


def prepare_workspace(home: Path) -> Path:
    """A dbt project under `home` that links this one and adds the elementary package."""
    work = home / "elementary" / "project"
    work.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = work / name
        if not link.exists():
            link.symlink_to(PROJECT_ROOT / name, target_is_directory=True)
    project = yaml.safe_load((PROJECT_ROOT / "dbt_project.yml").read_text())
    project.setdefault("models", {})["elementary"] = {"+schema": "elementary"}
    project["target-path"] = str(home / "elementary" / "target")
    (work / "dbt_project.yml").write_text(yaml.safe_dump(project, sort_keys=False))
    (work / "packages.yml").write_text(yaml.safe_dump({"packages": [ELEMENTARY_PACKAGE]}))
    return work


def run_elementary(settings: Settings, *, echo: Callable[[str], None] = print) -> int:
    """Install elementary and build its report when the hub is reachable; else explain."""
    report = settings.quality.reports_dir / "quality.html"
    ok, reason = hub_reachable(settings.quality.dbt_hub_url)
    if not ok:
        raise ElementaryUnavailable(offline_message(settings.quality.dbt_hub_url, reason, report))
    work = prepare_workspace(settings.home)
    env = {**os.environ, **dbt_environment(settings)}
    dbt = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"
    for args in (["deps"], ["run", "--select", "elementary"], ["test"]):
        echo(f"dbt {' '.join(args)} (in {work})")
        done = children.run([dbt, *args], cwd=work, env=env, text=True, capture_output=True)
        if done.returncode not in (0, 1):  # 1: tests failed, still worth reporting
            tail = "\n".join(done.stdout.splitlines()[-20:])
            raise ElementaryUnavailable(f"`dbt {' '.join(args)}` failed:\n{tail}")
    edr = shutil.which("edr", path=str(Path(sys.executable).parent)) or shutil.which("edr")
    if edr is None:
        raise ElementaryUnavailable(
            "elementary's dbt models are built, but its CLI `edr` is not installed: "
            "`pip install 'elementary-data[postgres]'`, then run this command again"
        )
    out = settings.quality.reports_dir / "elementary.html"
    children.run(
        [
            edr,
            "report",
            "--project-dir",
            str(work),
            "--profiles-dir",
            str(work / "profiles"),
            "--file-path",
            str(out),
        ],
        env=env,
        check=True,
    )
    echo(f"elementary report: {out}")
    return 0
