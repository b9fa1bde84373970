"""The Dagster code location's pieces that need no database: retries classified as `elt run`
classifies them, dbt nodes mapped to the raw tables and their layers."""

from __future__ import annotations

import os

import dagster as dg
import psycopg2
import pytest

from loader.dagster.resources import RETRY_POLICY, environment, retried_if_transient
from loader.dagster.transform import MarketplaceTranslator, layer
from loader.extract.tables import TableConfigError
from loader.orchestrate.runner import RETRIES


def test_a_transient_error_is_left_to_the_retry_policy() -> None:
    lost = psycopg2.OperationalError("server closed the connection unexpectedly")
    with pytest.raises(psycopg2.OperationalError), retried_if_transient():
        raise lost
    assert RETRY_POLICY.max_retries == RETRIES
    assert RETRY_POLICY.backoff == dg.Backoff.EXPONENTIAL


def test_any_other_error_fails_at_once_with_its_message() -> None:
    with pytest.raises(dg.Failure) as failed, retried_if_transient():
        raise TableConfigError("tables.orders: column(s) updated_at not in source table")
    assert failed.value.allow_retries is False
    assert "TableConfigError: tables.orders: column(s) updated_at" in failed.value.description


def test_dbt_sources_are_the_raw_tables_and_nodes_sit_in_their_layer() -> None:
    translator = MarketplaceTranslator()
    source = {"resource_type": "source", "schema": "raw_marketplace", "name": "orders",
              "identifier": "orders", "fqn": ["marketplace", "marketplace", "orders"]}
    mart = {"resource_type": "model", "name": "fct_orders",
            "fqn": ["marketplace", "marts", "core", "fct_orders"]}
    seed = {"resource_type": "seed", "name": "us_states", "fqn": ["marketplace", "us_states"]}
    assert translator.get_asset_key(source) == dg.AssetKey(["raw_marketplace", "orders"])
    assert translator.get_asset_key(mart) == dg.AssetKey(["marts", "fct_orders"])
    assert layer(seed) == "reference" and translator.get_group_name(mart) == "marts"


def test_environment_is_restored_after_the_dbt_call(monkeypatch) -> None:
    monkeypatch.setenv("ELT_WAREHOUSE_HOST", "before")
    monkeypatch.delenv("ELT_WAREHOUSE_DATABASE", raising=False)
    with environment({"ELT_WAREHOUSE_HOST": "db", "ELT_WAREHOUSE_DATABASE": "dw"}):
        assert os.environ["ELT_WAREHOUSE_HOST"] == "db"
    assert os.environ["ELT_WAREHOUSE_HOST"] == "before"
    assert "ELT_WAREHOUSE_DATABASE" not in os.environ
