"""The dbt project as Dagster assets (dagster-dbt), built from its manifest: every model,
snapshot and seed an asset downstream of its raw tables, every dbt test an asset check, and
the marts published write-audit-publish as `elt run` publishes them."""


import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from loader.config import PROJECT_ROOT, Settings, dbt_environment
from loader.dagster.resources import (
    POOL,
    RETRY_POLICY,
    EltResource,
    environment,
    retried_if_transient,
)
from loader.orchestrate.dbt import DBT_VARS, dbt_executable, dbt_project_hash, run_dbt
from loader.orchestrate.publish import build_invocation, ensure_published

# the dbt resource types named after the schema they build into, not the model folders
LAYERS = {"seed": "reference", "snapshot": "snapshots"}


def dbt_target(settings: Settings) -> Path:
    """Dagster's own dbt target folder (the project's target/ belongs to `elt run`)."""
    return settings.home / "dagster" / "dbt"


def prepare_manifest(settings: Settings) -> Path:
    """`dbt parse` into dbt_target when the project changed since the last parse, so that
    models added to the project (a package, a new mart) become assets by themselves."""
    target = dbt_target(settings)
    manifest, stamp = target / "manifest.json", target / "project.sha256"
    digest = dbt_project_hash(settings.env)
    if not manifest.exists() or not stamp.exists() or stamp.read_text() != digest:
        # the build's --vars: the parse it leaves behind stays valid for the build
        run_dbt(settings, "parse", "--vars", DBT_VARS, "--target-path", str(target),
                "--log-path", str(target))
        stamp.write_text(digest)
    return manifest


def layer(props: Mapping[str, Any]) -> str:
    """staging, intermediate, marts (a model's top folder), reference (seeds), snapshots."""
    fqn = props.get("fqn") or []
    if props["resource_type"] == "model" and len(fqn) > 2:
        return fqn[1]
    return LAYERS.get(props["resource_type"], props["resource_type"])


class MarketplaceTranslator(DagsterDbtTranslator):
    """A dbt source is the raw table the loader writes ([schema, table], the key of the load
    asset); a dbt node is [layer, name] in the group of its layer."""

    def __init__(self) -> None:
        super().__init__(DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        props = dbt_resource_props
        if props["resource_type"] == "source":
            return dg.AssetKey([props["schema"], props.get("identifier") or props["name"]])
        return dg.AssetKey([layer(props), props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return layer(dbt_resource_props)


def build_dbt_assets(manifest: Path) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=manifest,
        dagster_dbt_translator=MarketplaceTranslator(),
        name="dbt_build",
        retry_policy=RETRY_POLICY,
        pool=POOL,
    )
    def dbt_build(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, elt: EltResource
    ) -> Iterator[Any]:
        with retried_if_transient(), elt.exclusive(context, "dbt build") as settings:
            target = dbt_target(settings) / "runs" / context.run.run_id
            _reuse_parse(dbt_target(settings), target)
            with environment(dbt_environment(settings)):  # the profile reads the warehouse
                invocation = dbt.cli(["build", "--vars", DBT_VARS], context=context,
                                     target_path=target)
            yield from invocation.stream()
            _publish(context, settings, target)

    return dbt_build


def _reuse_parse(parsed: Path, target: Path) -> None:
    """Start the build from prepare_manifest's parse (dbt reparses what changed since)."""
    target.mkdir(parents=True, exist_ok=True)
    source = parsed / "partial_parse.msgpack"
    if source.exists():
        shutil.copy(source, target / "partial_parse.msgpack")


def _publish(context: dg.AssetExecutionContext, settings: Settings, target: Path) -> None:
    """What `elt run`'s publish task does after its build: make sure reporters read this
    build's marts (dbt published them at its end when every mart was built and tested). A
    build of some models only publishes nothing, as a `dbt build --select` does: the next
    build of every mart publishes them."""
    whole = (set(context.selected_asset_keys) == set(context.assets_def.keys)
             and set(context.selected_asset_check_keys) == set(context.assets_def.check_keys))
    if not whole:
        context.log.info("a build of some dbt assets publishes no marts: reporters read the "
                         "last build of every mart")
        return
    publication = ensure_published(settings, build_invocation(target), strict=True)
    context.log.info(f"published: reporters read the marts built by dbt invocation "
                     f"{publication.built_by} ({len(publication.marts)} marts)")


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(PROJECT_ROOT),
        profiles_dir=str(PROJECT_ROOT / "profiles"),
        dbt_executable=dbt_executable(),
    )
