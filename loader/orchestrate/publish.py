"""Which build of the marts reporters read: the publications the dbt side records
(quality.mart_publications, written by macros/publish.sql in the transaction that publishes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from loader.config import Endpoint, Settings, dbt_schema
from loader.db import connect_raw
from loader.orchestrate import dbt
from loader.orchestrate.dbt import BUILD_VARS, target_path


@dataclass(frozen=True)
class Publication:
    """One publish: every mart of one build became what `reporter` reads, at once."""

    built_by: str  # the dbt invocation that built the published copy
    built_at: datetime | None
    published_at: datetime
    tested: bool | None  # a `dbt build` that ran every error-severity test of the marts
    marts: list[str]


class MartsNotPublished(RuntimeError):
    """The build succeeded but its marts were not published."""


def last_publication(endpoint: Endpoint, env: str) -> Publication | None:
    """The newest publication of environment `env`'s marts, or None when they were never
    published (environments that share a warehouse share quality.mart_publications; each
    publishes its own copies, dev_marts_live, marts_live, ...)."""
    conn = connect_raw(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('quality.mart_publications') is not null")
            if not cur.fetchone()[0]:
                return None
            cur.execute(
                "select built_by, built_at, published_at, tested, marts "
                "from quality.mart_publications where live_schema = %s "
                "order by published_at desc limit 1",
                (dbt_schema(env, "marts_live"),),
            )
            row = cur.fetchone()
    finally:
        conn.rollback()
        conn.close()
    return Publication(*row) if row else None


def build_invocation(target: Path | None = None) -> str | None:
    """The invocation id of the last dbt command that wrote `target`'s run_results.json."""
    path = (target or target_path()) / "run_results.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("metadata", {}).get("invocation_id")


def ensure_published(settings: Settings, built_by: str | None, *, strict: bool) -> Publication:
    """Make sure reporters read the build `built_by` (a dbt invocation id) and return what
    they read. dbt built the marts into marts_build and, every mart built and every
    error-severity test on them passed, published them at its end, all in one transaction
    (macros/publish.sql); a build that left publishing to later (var publish_on_build: false,
    or a publish that failed) is published here by the same macro, which refuses an
    incomplete copy. With `strict`, a publication of another build is an error (the caller
    knows that `built_by` is the build it just ran). Shared by `elt run` and Dagster."""
    publication = last_publication(settings.warehouse, settings.env)
    if publication is not None and publication.built_by == built_by:
        return publication
    dbt.run_dbt(settings, "run-operation", "publish_marts", "--vars", BUILD_VARS)
    publication = last_publication(settings.warehouse, settings.env)
    if publication is None or (strict and publication.built_by != built_by):
        raise MartsNotPublished(
            "the build succeeded but its marts were not published: see "
            "`dbt run-operation publish_marts` (macros/publish.sql)"
        )
    return publication
