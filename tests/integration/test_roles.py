"""The least-privilege roles at work: a login user granted only `loader` loads, one granted
only `transformer` builds, one granted only `reporter` reads the marts and nothing else."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import psycopg2
import pytest

from loader.config import Endpoint, Settings, dbt_environment
from loader.db import connect_raw
from loader.extract.pipeline import run_load
from loader.extract.plan import LoadRequest
from loader.extract.results import LoadResult
from loader.extract.tables import load_config
from loader.source import simulator
from loader.source.simulator import SimConfig
from tests.conftest import SIM_END, private_settings, query
from tests.integration.test_dbt_project import SCALE, Project, private_dbt_env

pytestmark = pytest.mark.slow

# login users, one role each; roles are cluster-wide and the session's server is thrown away
USERS = {
    "loader": "elt_test_loader",
    "transformer": "elt_test_transformer",
    "reporter": "elt_test_reporter",
}


def as_user(endpoint: Endpoint, role: str) -> Endpoint:
    """The endpoint as the login user granted only `role` (the embedded server trusts local
    connections: no password)."""
    return dataclasses.replace(endpoint, user=USERS[role], password="")


def can_select(endpoint: Endpoint, relation: str) -> bool:
    conn = connect_raw(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute(f"select count(*) from {relation}")
            return True
    except psycopg2.errors.InsufficientPrivilege:
        return False
    finally:
        conn.rollback()
        conn.close()


@pytest.fixture(scope="module")
def admin_built(settings: Settings, tmp_path_factory) -> Project:
    """A warehouse the server's superuser loaded and built, as `elt run` does by default: every
    schema was the admin's until the build's hooks handed raw and ops to loader, the dbt
    schemas to transformer. One login user per role, created before the build."""
    local = private_settings(settings, "roles", tmp_path_factory.mktemp("roles-home"))
    simulator.init(local.source, SimConfig(scale=SCALE, seed=11, end_date=SIM_END))
    work = tmp_path_factory.mktemp("roles-dbt")
    env = private_dbt_env(local, work, "admin-target")
    admin = Project(local, env)
    admin.load()
    # the DBA's part: login users granted one role each (the roles as the hook makes them);
    # the next dbt run sets the default privileges of the roles' members
    conn = connect_raw(local.warehouse, autocommit=True)
    try:
        with conn.cursor() as cur:
            for role, user in USERS.items():
                for name, options in ((role, "nologin"), (user, f'login in role "{role}"')):
                    cur.execute("select from pg_roles where rolname = %s", (name,))
                    if cur.fetchone() is None:
                        cur.execute(f'create role "{name}" {options}')
    finally:
        conn.close()
    admin.dbt("build")
    return admin


@pytest.fixture(scope="module")
def loader_loads(admin_built: Project) -> dict[str, LoadResult]:
    """A day of source changes loaded by the loader-only user, then products reloaded whole
    (its raw table dropped and recreated) by the same user."""
    simulator.advance(admin_built.source, 1)
    as_loader = dataclasses.replace(
        admin_built.settings, warehouse=as_user(admin_built.warehouse, "loader")
    )
    config = load_config(as_loader.tables_config)
    increment = run_load(as_loader, config)
    full = run_load(as_loader, config, LoadRequest(["products"], full_refresh=True))
    return {"increment": increment, "full": full}


@pytest.fixture(scope="module")
def transformer_build(admin_built: Project, loader_loads, tmp_path_factory) -> Path:
    """`dbt build` by the transformer-only user, over the admin's objects and the loader's
    loads; its target directory."""
    as_transformer = dataclasses.replace(
        admin_built.settings, warehouse=as_user(admin_built.warehouse, "transformer")
    )
    target = tmp_path_factory.mktemp("transformer-target")
    env = {
        **admin_built.env,
        **dbt_environment(as_transformer),
        "DBT_TARGET_PATH": str(target),
        "ELT_DBT_THREADS": "2",
    }
    Project(as_transformer, env).dbt("build")
    return target


def test_a_loader_user_loads_increments_and_full_refreshes(loader_loads) -> None:
    increment, full = loader_loads["increment"], loader_loads["full"]
    assert increment.tables["orders"].rows_extracted > 0, increment
    assert all(r.reconciled for r in increment.tables.values()), increment
    assert full.tables["products"].action == "full" and full.tables["products"].reconciled


def test_a_raw_table_recreated_by_a_full_refresh_is_readable_by_transformer(
    admin_built: Project, loader_loads
) -> None:
    # before any dbt run grants it: default privileges of the loader's members
    assert can_select(as_user(admin_built.warehouse, "transformer"), "raw_marketplace.products")


def test_a_transformer_user_builds_and_writes_quality_results(
    admin_built: Project, transformer_build: Path
) -> None:
    invocation = json.loads((transformer_build / "run_results.json").read_text())["metadata"][
        "invocation_id"
    ]
    stored = query(
        admin_built.warehouse,
        "select command, errors, (select count(*) from quality.dbt_results r"
        " where r.invocation_id = i.invocation_id) from quality.dbt_invocations i"
        " where invocation_id = %s",
        (invocation,),
    )
    assert len(stored) == 1 and stored[0][:2] == ("build", 0) and stored[0][2] > 100, stored
    # the build read the loader's increment
    raw, clean, held = (
        admin_built.scalar(f"select count(*) from {relation}")
        for relation in (
            "raw_marketplace.orders",
            "dev_intermediate.int_orders_cleaned",
            "dev_quarantine.int_orders_quarantined",
        )
    )
    assert raw == clean + held


def test_a_reporter_user_reads_marts_but_not_raw(
    admin_built: Project, transformer_build: Path
) -> None:
    reporter = as_user(admin_built.warehouse, "reporter")
    # the marts the transformer user just rebuilt: default privileges of transformer's members
    assert can_select(reporter, "dev_marts.fct_orders")
    assert can_select(reporter, "dev_marts.daily_revenue")
    # the copies' tables carry the marts' dbt grants too: the schemas keep reporter out
    for relation in (
        "dev_marts_live.fct_orders",
        "dev_marts_build.fct_orders",
        "raw_marketplace.orders",
        "dev_staging.stg_marketplace__orders",
        "dev_quarantine.int_orders_quarantined",
        "quality.dbt_results",
        "ops.raw_row_counts",
    ):
        assert not can_select(reporter, relation), f"reporter reads {relation}"
