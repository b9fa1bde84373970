"""The Definitions of the code location: source tables, raw, the dbt project, checks, the
daily job and its schedule, and the resources, all from the environment `elt` reads."""

from __future__ import annotations

import logging

import dagster as dg

from loader.dagster.alerts import alert_on_failed_run
from loader.dagster.raw import (
    build_freshness_checks,
    build_load_assets,
    foreign_keys_or_none,
    source_specs,
)
from loader.dagster.report import build_report_asset
from loader.dagster.resources import EltResource
from loader.dagster.transform import build_dbt_assets, dbt_resource, prepare_manifest
from loader.extract.tables import load_config

DAILY_CRON = "0 3 * * *"  # every day at 03:00 UTC
log = logging.getLogger(__name__)


def build_definitions(
    environ: dict[str, str] | None = None, *, lock_wait_seconds: float = 3600.0
) -> dg.Definitions:
    """Everything from the settings `elt` reads (plus `environ` on top of the process's)."""
    elt = EltResource(environ=environ or {}, lock_wait_seconds=lock_wait_seconds)
    settings = elt.settings()
    config = load_config(settings.tables_config)
    fks = foreign_keys_or_none(settings, config, log)
    daily = dg.define_asset_job(
        "marketplace_daily",
        selection=dg.AssetSelection.all(),
        description="every raw table in one source snapshot, then dbt build and publish, "
        "with the raw tables' reconciliation and freshness checks and the dbt tests",
    )
    dbt = build_dbt_assets(prepare_manifest(settings))
    return dg.Definitions(
        assets=[
            *source_specs(config),
            build_load_assets(config, fks),
            dbt,
            build_report_asset([key for key in dbt.keys if key.path[0] == "marts"]),
        ],
        asset_checks=[build_freshness_checks(config)],
        jobs=[daily],
        schedules=[
            dg.ScheduleDefinition(name="marketplace_daily_schedule", job=daily,
                                  cron_schedule=DAILY_CRON, execution_timezone="UTC")
        ],
        sensors=[alert_on_failed_run],
        resources={"elt": elt, "dbt": dbt_resource()},
    )
