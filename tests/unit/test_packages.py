"""dbt packages from a local mirror of the hub: versions resolved, dependencies followed,
installed once until packages.yml changes; `dbt deps` when no mirror is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from loader.config import ConfigError, load_settings
from loader.packages import STAMP, PackagesUnavailable, ensure_packages


def package(mirror: Path, full: str, version: str, name: str, needs: list | None = None):
    folder = mirror / full / version
    folder.mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(yaml.safe_dump({"name": name, "version": version}))
    if needs:
        (folder / "packages.yml").write_text(yaml.safe_dump({"packages": needs}))


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    for v in ("0.8.6", "1.3.3", "1.4.0"):
        package(root, "dbt-labs/dbt_utils", v, "dbt_utils")
    package(root, "elementary-data/elementary", "0.25.1", "elementary",
            needs=[{"package": "dbt-labs/dbt_utils", "version": [">=0.8.0", "<2.0.0"]}])
    return root


def project(tmp_path: Path, packages: list) -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / "packages.yml").write_text(yaml.safe_dump({"packages": packages}))
    return folder


def test_the_newest_version_in_range_is_copied_and_the_projects_pin_wins(tmp_path, mirror):
    p = project(tmp_path, [
        {"package": "elementary-data/elementary", "version": "0.25.1"},
        {"package": "dbt-labs/dbt_utils", "version": [">=1.3.0", "<1.4.0"]},
    ])
    done = ensure_packages(p, mirror)
    assert done == ["dbt-labs/dbt_utils 1.3.3", "elementary-data/elementary 0.25.1"]
    installed = yaml.safe_load((p / "dbt_packages" / "dbt_utils" / "dbt_project.yml").read_text())
    assert installed["version"] == "1.3.3"
    assert (p / "dbt_packages" / STAMP).exists()


def test_a_second_call_installs_nothing_until_packages_yml_changes(tmp_path, mirror):
    p = project(tmp_path, [{"package": "dbt-labs/dbt_utils", "version": "0.8.6"}])
    assert ensure_packages(p, mirror)
    assert ensure_packages(p, mirror) == []
    project(tmp_path, [{"package": "dbt-labs/dbt_utils", "version": "1.3.3"}])
    assert ensure_packages(p, mirror) == ["dbt-labs/dbt_utils 1.3.3"]


def test_a_read_only_mirror_gives_a_copy_the_next_install_can_replace(tmp_path, mirror):
    for path in [*mirror.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    p = project(tmp_path, [{"package": "dbt-labs/dbt_utils", "version": "0.8.6"}])
    ensure_packages(p, mirror)
    installed = p / "dbt_packages" / "dbt_utils"
    assert installed.stat().st_mode & 0o200
    assert (installed / "dbt_project.yml").stat().st_mode & 0o200
    project(tmp_path, [{"package": "dbt-labs/dbt_utils", "version": "1.3.3"}])
    assert ensure_packages(p, mirror) == ["dbt-labs/dbt_utils 1.3.3"]


def test_a_dependency_of_a_package_is_installed_too(tmp_path, mirror):
    p = project(tmp_path, [{"package": "elementary-data/elementary", "version": "0.25.1"}])
    assert ensure_packages(p, mirror, tmp_path / "elsewhere") == [
        "dbt-labs/dbt_utils 1.4.0", "elementary-data/elementary 0.25.1"]
    assert (tmp_path / "elsewhere" / "dbt_utils").is_dir()
    assert not (p / "dbt_packages").exists()


def test_a_version_missing_from_the_mirror_is_named(tmp_path, mirror):
    p = project(tmp_path, [{"package": "dbt-labs/dbt_utils", "version": "9.9.9"}])
    with pytest.raises(PackagesUnavailable, match=r"9\.9\.9.*0\.8\.6, 1\.3\.3, 1\.4\.0"):
        ensure_packages(p, mirror)


def test_without_a_mirror_dbt_deps_runs(tmp_path, monkeypatch):
    import loader.packages as packages

    calls = []
    monkeypatch.setattr(packages, "_dbt_deps", lambda folder, env: calls.append(folder) or ["x"])
    p = project(tmp_path, [{"package": "dbt-labs/dbt_utils", "version": "1.3.3"}])
    assert ensure_packages(p, None) == ["x"] and calls == [p]


def test_the_mirror_variable_must_name_a_folder(tmp_path):
    assert load_settings({}).dbt_packages_mirror is None
    assert load_settings({"ELT_DBT_PACKAGES_MIRROR": str(tmp_path)}).dbt_packages_mirror == tmp_path
    with pytest.raises(ConfigError, match="ELT_DBT_PACKAGES_MIRROR"):
        load_settings({"ELT_DBT_PACKAGES_MIRROR": str(tmp_path / "nope")})
