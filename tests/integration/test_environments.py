"""Configuration as the README says: standalone dbt reaches the embedded server wherever `elt`
does, and two environments built into one warehouse keep to their own schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loader.config import (
    DBT_SCHEMAS,
    PROJECT_ROOT,
    PUBLISHED_SCHEMAS,
    Settings,
    dbt_environment,
    dbt_schema,
    load_settings,
)
from loader.extract.pipeline import run_load
from loader.extract.tables import load_config
from loader.source import simulator
from loader.source.simulator import SimConfig
from tests.conftest import SIM_END, private_settings, query

pytestmark = pytest.mark.slow

DBT = Path(sys.executable).parent / "dbt"
# a seed, staging views, the validated/cleaned layer, a mart, a snapshot and their tests:
# every kind of schema the project writes, at a small cost
# (not elementary's monitors: they need its tables, which `dbt run --select elementary` makes)
SELECTION = ["--select", "+dim_products", "customers_snapshot", "--indirect-selection", "cautious",
             "--exclude", "tag:elementary-tests"]


def shell_env(**extra: str) -> dict[str, str]:
    """A user's shell: none of the variables `elt` hands to dbt, only what is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "DBT_"))}
    return {**env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **extra}


def run_dbt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(DBT), "--no-use-colors", *args],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}"
    return result


@pytest.mark.parametrize("precedence", ["ELT_PG_PORT", "ELT_WAREHOUSE_PORT"])
def test_standalone_dbt_reaches_the_embedded_server_on_its_port(
    elt_env: dict[str, str], tmp_path: Path, precedence: str
) -> None:
    """The session server listens on a random port, never 55432. dbt run by hand, as the
    README's `DBT_PROFILES_DIR=profiles .venv/bin/dbt ...` lines do, finds it from ELT_PG_PORT
    alone; ELT_WAREHOUSE_PORT (what `elt` passes to dbt) wins over it, as it does for `elt`."""
    port = elt_env["ELT_PG_PORT"]
    assert port != "55432"
    ports = (
        {"ELT_PG_PORT": port}
        if precedence == "ELT_PG_PORT"
        else {"ELT_PG_PORT": "1", "ELT_WAREHOUSE_PORT": port}
    )
    env = shell_env(
        DBT_PROFILES_DIR="profiles",
        DBT_TARGET_PATH=str(tmp_path / "target"),
        DBT_LOG_PATH=str(tmp_path / "logs"),
        **ports,
    )
    out = run_dbt(env, "debug").stdout
    assert f"port: {port}" in out
    assert "Connection test: [OK connection ok]" in out
    # elt hands dbt the port it uses itself
    assert dbt_environment(load_settings(elt_env))["ELT_WAREHOUSE_PORT"] == port


def node_schemas(target_path: Path) -> dict[str, tuple[str, str]]:
    """Every model, seed, snapshot and test of the manifest: (its schema, its configured one)."""
    manifest = json.loads((target_path / "manifest.json").read_text())
    return {
        uid: (node["schema"], node["config"].get("schema") or "analytics")
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] in ("model", "seed", "snapshot", "test")
    }


def test_prod_keeps_the_schema_names_and_the_others_prefix_them(tmp_path: Path) -> None:
    """The names dbt resolves (macros/generate_schema_name.sql) are those `elt` expects
    (loader.config.dbt_schema): prod builds marts, dev dev_marts, staging staging_marts;
    no connection."""
    for env_name in ("prod", "dev", "staging"):
        target = tmp_path / env_name
        env = shell_env(
            ELT_ENV=env_name, DBT_PROFILES_DIR="profiles", DBT_TARGET_PATH=str(target),
            DBT_LOG_PATH=str(tmp_path / "logs"),
        )
        run_dbt(env, "parse")
        schemas = node_schemas(target)
        assert schemas
        for uid, (schema, configured) in schemas.items():
            assert schema == dbt_schema(env_name, configured), uid
        built = {schema for schema, _ in schemas.values()}
        nodes_write = set(DBT_SCHEMAS) - set(PUBLISHED_SCHEMAS)  # the marts: marts_build
        if env_name == "prod":
            assert built == nodes_write
        else:
            assert built == {f"{env_name}_{s}" for s in nodes_write}


@pytest.fixture(scope="module")
def shared_warehouse(settings: Settings, tmp_path_factory) -> tuple[Settings, dict[str, str]]:
    """One warehouse with raw loaded by the real loader, for several environments."""
    local = private_settings(settings, "envs", tmp_path_factory.mktemp("envs-home"))
    simulator.init(local.source, SimConfig(scale=0.005, seed=5, dirty_rate=0.0, end_date=SIM_END))
    result = run_load(local, load_config(local.tables_config))
    assert all(t.reconciled for t in result.tables.values())
    return local, {**os.environ, **dbt_environment(local), "ELT_DBT_THREADS": "2"}


def fingerprint(settings: Settings, schemas: list[str]) -> dict[str, tuple]:
    """Every relation in `schemas`: its oid (dbt replaces a rebuilt table or view by a new
    one), its row count and a digest of its rows."""
    relations = query(
        settings.warehouse,
        "select n.nspname, c.relname, c.oid::bigint from pg_class c join pg_namespace n"
        " on n.oid = c.relnamespace where n.nspname = any(%s) and c.relkind in ('r', 'v')"
        " order by 1, 2",
        (schemas,),
    )
    out = {}
    for schema, name, oid in relations:
        rows, digest = query(
            settings.warehouse,
            "select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), ''))"
            f' from "{schema}"."{name}" t',
        )[0]
        out[f"{schema}.{name}"] = (oid, rows, digest)
    return out


def test_two_environments_in_one_warehouse_leave_each_other_untouched(
    shared_warehouse: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """prod builds into today's schemas, dev into dev_*: building one after the other, and
    the first again, leaves the other's relations as they were (same relation, same rows).
    Both read the raw layer the loader wrote, which one warehouse holds once."""
    local, base = shared_warehouse
    dev_schemas = [dbt_schema("dev", s) for s in DBT_SCHEMAS]
    prod_schemas = [dbt_schema("prod", s) for s in DBT_SCHEMAS]
    assert not set(dev_schemas) & set(prod_schemas)

    def build(env_name: str) -> None:
        target = tmp_path / env_name  # each its own target: partial parsing stays valid
        env = {**base, "ELT_ENV": env_name, "DBT_TARGET_PATH": str(target),
               "DBT_LOG_PATH": str(tmp_path / "logs")}
        run_dbt(env, "build", *SELECTION)
        results = json.loads((target / "run_results.json").read_text())["results"]
        manifest = json.loads((target / "manifest.json").read_text())["nodes"]
        nodes = [manifest[r["unique_id"]] for r in results if r["unique_id"] in manifest]
        written = {node["schema"] for node in nodes}
        assert written <= {dbt_schema(env_name, s) for s in (*DBT_SCHEMAS, "analytics")}

    build("dev")
    dev_before = fingerprint(local, dev_schemas)
    # (a build of some marts publishes none: they stay in the build copy)
    assert {"dev_marts_build.dim_products", "dev_reference.us_states",
            "dev_snapshots.customers_snapshot",
            "dev_staging.stg_marketplace__products"} <= set(dev_before)

    build("prod")
    prod_before = fingerprint(local, prod_schemas)
    assert {"marts_build.dim_products", "reference.us_states", "snapshots.customers_snapshot",
            "staging.stg_marketplace__products"} <= set(prod_before)
    assert fingerprint(local, dev_schemas) == dev_before

    build("dev")
    assert fingerprint(local, prod_schemas) == prod_before
    # the fingerprint sees a rebuild: dev's second build replaced its own relations
    assert fingerprint(local, dev_schemas) != dev_before
    # and the two hold the same mart, built from the same raw
    same = query(
        local.warehouse,
        "select count(*) from (select * from marts_build.dim_products except all"
        " select * from dev_marts_build.dim_products) d",
    )
    assert same == [(0,)]
