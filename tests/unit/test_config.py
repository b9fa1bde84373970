"""Settings come from the environment only, and never leak a password."""

import pytest

from loader.config import (
    DBT_SCHEMAS,
    ConfigError,
    Endpoint,
    dbt_environment,
    dbt_relation,
    dbt_schema,
    load_settings,
    redact,
)


def test_dev_defaults_to_the_embedded_server(tmp_path):
    s = load_settings({"ELT_HOME": str(tmp_path)})
    assert s.env == "dev"
    assert s.embedded
    assert s.warehouse.display == "postgresql://postgres@127.0.0.1:55432/warehouse"
    assert s.source.database == "source"
    assert s.pgdata == tmp_path / "pgdata"


def test_external_urls_switch_off_the_embedded_server(tmp_path):
    s = load_settings({
        "ELT_HOME": str(tmp_path),
        "ELT_WAREHOUSE_URL": "postgresql://etl:pw@db.internal:6543/dw",
        "ELT_SOURCE_URL": "postgresql://ro@app-db:5432/shop",
        "ELT_SOURCE_PASSWORD": "from-env",
    })
    assert not s.embedded
    assert s.warehouse.host == "db.internal" and s.warehouse.port == 6543
    assert s.warehouse.password == "pw"
    assert s.source.password == "from-env"


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_staging_and_prod_refuse_to_start_an_embedded_server(env):
    with pytest.raises(ConfigError, match="ELT_WAREHOUSE_URL and ELT_SOURCE_URL"):
        load_settings({"ELT_ENV": env})


def test_unknown_environment_is_named():
    with pytest.raises(ConfigError, match="ELT_ENV='qa' is unknown"):
        load_settings({"ELT_ENV": "qa"})


@pytest.mark.parametrize("port", ["abc", "80", "70000"])
def test_bad_port_says_what_to_use(port):
    with pytest.raises(ConfigError, match="ELT_PG_PORT"):
        load_settings({"ELT_PG_PORT": port})


def test_endpoint_display_and_repr_hide_the_password():
    ep = Endpoint.from_url("postgresql://u:hunter2@h:1/d")
    assert "hunter2" not in ep.display
    assert "hunter2" not in repr(ep)
    assert "hunter2" in ep.dsn  # only the driver sees it


def test_redact_replaces_passwords_in_urls():
    assert redact("postgresql://u:hunter2@h:1/d") == "postgresql://u:***@h:1/d"
    assert redact("postgresql://u@h:1/d") == "postgresql://u@h:1/d"


def test_url_without_database_is_rejected():
    with pytest.raises(ConfigError, match="no database name"):
        Endpoint.from_url("postgresql://u@h:1")


def test_unsupported_scheme_is_rejected():
    with pytest.raises(ConfigError, match="unsupported URL scheme 'mysql'"):
        Endpoint.from_url("mysql://u:secret@h/d")


@pytest.mark.parametrize(
    ("env", "relation", "built"),
    [
        ("prod", "marts.fct_orders", "marts.fct_orders"),
        ("dev", "marts.fct_orders", "dev_marts.fct_orders"),
        ("staging", "marts.fct_orders", "staging_marts.fct_orders"),
        ("staging", "staging.stg_marketplace__orders", "staging_staging.stg_marketplace__orders"),
        ("staging", "test_failures", "staging_test_failures"),
        # the loader's and the quality layer's schemas are not dbt's: never renamed
        ("staging", "raw_marketplace.orders", "raw_marketplace.orders"),
        ("staging", "ops.raw_deletes", "ops.raw_deletes"),
        ("staging", "quality", "quality"),
    ],
)
def test_dbt_schemas_are_named_per_environment(env, relation, built):
    """The Python side of macros/generate_schema_name.sql (the dbt side is checked against a
    parsed manifest in tests/integration/test_environments.py)."""
    assert dbt_relation(env, relation) == built


def test_every_dbt_schema_of_staging_differs_from_prod():
    assert {dbt_schema("staging", s) for s in DBT_SCHEMAS}.isdisjoint(DBT_SCHEMAS)


def test_elt_env_reaches_dbt_normalised_with_the_embedded_port(tmp_path):
    """profiles/profiles.yml picks its target from ELT_ENV and its port from
    ELT_WAREHOUSE_PORT: elt passes both, as it resolved them."""
    s = load_settings({"ELT_HOME": str(tmp_path), "ELT_ENV": " Dev ", "ELT_PG_PORT": "56001"})
    env = dbt_environment(s)
    assert env["ELT_ENV"] == "dev"
    assert env["ELT_WAREHOUSE_PORT"] == "56001"


@pytest.mark.parametrize(("value", "rendered"), [
    (None, True), ("true", True), ("on", True), ("false", False), ("0", False), ("No", False),
])
def test_elt_run_renders_the_html_report_unless_told_not_to(tmp_path, value, rendered):
    env = {"ELT_HOME": str(tmp_path)} | ({"ELT_HTML_REPORT": value} if value else {})
    assert load_settings(env).quality.html_report is rendered


def test_a_bad_html_report_switch_says_what_to_use(tmp_path):
    with pytest.raises(ConfigError, match="ELT_HTML_REPORT='maybe': use true or false"):
        load_settings({"ELT_HOME": str(tmp_path), "ELT_HTML_REPORT": "maybe"})
