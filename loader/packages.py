"""dbt hub packages for a dbt project: `dbt deps` from the hub, or a copy from a local mirror.

A machine that reaches hub.getdbt.com runs `dbt deps`. An offline one names a mirror of the
hub's released sources, laid out `<namespace>/<package>/<version>/`, in
ELT_DBT_PACKAGES_MIRROR (loader.config reads it; .ci/run sets it): each package of
packages.yml, and each package those ask for, is copied from there, at the newest mirrored
version in the range asked. Either way a stamp records what packages.yml asked for, so a run
installs again only on a fresh clone, after packages.yml changes, or after `dbt clean`."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from loader import children
from loader.config import UserError

STAMP = ".elt-packages.json"


class PackagesUnavailable(UserError, RuntimeError):
    """A package cannot be installed: not in the mirror, or `dbt deps` failed."""


def _requirements(project_dir: Path) -> list[dict]:
    path = project_dir / "packages.yml"
    if not path.exists():
        return []
    return [p for p in (yaml.safe_load(path.read_text()) or {}).get("packages", []) if p]


def _specifier(version: object) -> SpecifierSet:
    """packages.yml's version: "1.2.3" (exact) or a list of ranges [">=1.3.0", "<1.4.0"]."""
    parts = version if isinstance(version, list) else [version]
    return SpecifierSet(",".join(p if p[0] in "<>=!~" else f"=={p}" for p in map(str, parts)))


def _mirrored(mirror: Path, package: str, version: object) -> Path:
    """The mirror's folder of the newest version of `package` (namespace/name) in range."""
    wanted = _specifier(version)
    found = []
    for folder in (mirror / package).glob("*"):
        try:
            found.append((Version(folder.name), folder))
        except InvalidVersion:
            continue
    matching = sorted((v, f) for v, f in found if v in wanted)
    if not matching:
        have = ", ".join(sorted(str(v) for v, _ in found)) or "none"
        raise PackagesUnavailable(
            f"{package} {version} is not in the mirror {mirror} (it has: {have}): add it there "
            "(layout <namespace>/<package>/<version>/), or unset ELT_DBT_PACKAGES_MIRROR on "
            "a machine that reaches hub.getdbt.com"
        )
    return matching[-1][1]


def _dbt_name(folder: Path) -> str:
    """The name a package is installed under: its dbt_project.yml's `name`."""
    return yaml.safe_load((folder / "dbt_project.yml").read_text())["name"]


def _copy_from_mirror(project_dir: Path, install_dir: Path, mirror: Path) -> list[str]:
    """Copy every package packages.yml asks for, and what those ask for, into a fresh
    folder, then put it in place of `install_dir` in one rename."""
    staging = install_dir.with_name(install_dir.name + ".installing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    wanted = [(r["package"], r["version"]) for r in _requirements(project_dir) if "package" in r]
    installed: dict[str, str] = {}
    while wanted:
        package, version = wanted.pop(0)
        short = package.split("/")[-1]
        if short in installed:  # the project's own pin comes first and wins
            continue
        folder = _mirrored(mirror, package, version)
        shutil.copytree(folder, staging / _dbt_name(folder))
        _make_writable(staging / _dbt_name(folder))
        installed[short] = f"{package} {folder.name}"
        wanted += [(r["package"], r["version"]) for r in _requirements(folder) if "package" in r]
    shutil.rmtree(install_dir, ignore_errors=True)
    staging.rename(install_dir)
    return sorted(installed.values())


def _make_writable(folder: Path) -> None:
    """A read-only mirror copies read-only: let the next install (or `dbt clean`) remove it."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _dbt_deps(project_dir: Path, env: dict[str, str]) -> list[str]:
    dbt = Path(sys.executable).with_name("dbt")
    done = children.run(
        [str(dbt) if dbt.exists() else "dbt", "deps"],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-15:])
        raise PackagesUnavailable(
            f"`dbt deps` failed in {project_dir}:\n{tail}\nOn a machine that cannot reach "
            "hub.getdbt.com, set ELT_DBT_PACKAGES_MIRROR to a local mirror of the packages"
        )
    return ["dbt deps"]


@contextmanager
def _locked(install_dir: Path) -> Iterator[None]:
    """One installer at a time (a test run and an `elt run` may start together)."""
    install_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(install_dir.with_name(install_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _stamped(stamp: Path, packages_yml: str) -> bool:
    """The stamp, written last by an install, says it installed what packages.yml asks."""
    try:
        return json.loads(stamp.read_text()).get("packages_yml") == packages_yml
    except (OSError, ValueError):
        return False


def ensure_packages(
    project_dir: Path,
    mirror: Path | None,
    install_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> list[str]:
    """Install the packages of `project_dir` into `install_dir` (its dbt_packages/) unless
    the stamp says they are those packages.yml asks for. Returns what was installed, empty
    when nothing had to be."""
    install_dir = install_dir or project_dir / "dbt_packages"
    asked = (project_dir / "packages.yml").read_bytes() if _requirements(project_dir) else b""
    if not asked:
        return []
    want = {"packages_yml": hashlib.sha256(asked).hexdigest()}
    stamp = install_dir / STAMP
    # checked before taking the lock too: a project on a read-only file system (Lambda's
    # /var/task) has its packages installed with it and cannot create a lock file
    if _stamped(stamp, want["packages_yml"]):
        return []
    with _locked(install_dir):
        if _stamped(stamp, want["packages_yml"]):  # installed while this one waited
            return []
        if mirror is not None:
            done = _copy_from_mirror(project_dir, install_dir, mirror)
        else:
            done = _dbt_deps(project_dir, env or {})
        install_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({**want, "installed": done}, indent=2))
        return done


if __name__ == "__main__":  # `python -m loader.packages`: the project's packages, e.g. for lint
    from loader.config import PROJECT_ROOT, load_settings

    print("\n".join(ensure_packages(PROJECT_ROOT, load_settings().dbt_packages_mirror))
          or "dbt packages up to date")
