"""The raw copy of every source table as a Dagster asset: a thin multi-asset over the loader's
own load (`elt load`), with reconciliation and freshness as asset checks.

Why not dagster-dlt's `@dlt_assets`: it wraps one `pipeline.run(source)` of a dlt source of
rows. The loader hands dlt files it exported itself (binary COPY inside one source snapshot,
`dlt.mark.with_file_import`), holds that snapshot across the tables, counts source and raw
in it, repairs what differs (settle) and writes its bookkeeping around the run: none of that
is a dlt source, so a multi-asset calls `run_load` + `settle`, the functions `elt load` and
`elt run` call."""


from collections.abc import Iterator

import dagster as dg

from loader.config import UserError
from loader.dagster.resources import POOL, RETRY_POLICY, EltResource, retried_if_transient
from loader.extract.pipeline import run_load
from loader.extract.plan import LoadRequest
from loader.extract.results import LoadResult, TableResult
from loader.extract.settle import Unreconciled, settle
from loader.extract.tables import LoaderConfig, load_config
from loader.orchestrate.dbt import source_freshness
from loader.orchestrate.graph import table_graph

RECONCILED, FRESH = "reconciled", "fresh"


def source_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["source", table])


def raw_key(config: LoaderConfig, table: str) -> dg.AssetKey:
    """The raw table's key: [dataset, table], what the dbt sources map to (translator)."""
    return dg.AssetKey([config.dataset, table])


def source_specs(config: LoaderConfig) -> list[dg.AssetSpec]:
    """The operational tables, as external assets: the loader reads them, nothing builds them."""
    return [
        dg.AssetSpec(
            source_key(table),
            description=f"{config.source_schema}.{table} in the operational database "
            "(ELT_SOURCE_URL)",
            group_name="source",
            kinds={"postgres"},
        )
        for table in config.tables
    ]


def raw_specs(config: LoaderConfig, fks: list[tuple[str, str]]) -> list[dg.AssetSpec]:
    """One asset per table of tables.yml; its parents by foreign key are its dependencies."""
    graph = table_graph(list(config.tables), fks)
    specs = []
    for name, spec in config.tables.items():
        parents = sorted(graph.predecessors(name))
        specs.append(
            dg.AssetSpec(
                raw_key(config, name),
                deps=[source_key(name), *(raw_key(config, p) for p in parents)],
                description=f"{config.dataset}.{name}: the faithful copy of the source table "
                f"(mode {spec.mode}, key {', '.join(spec.primary_key)})",
                group_name="raw",
                kinds={"postgres", "dlt"},
                skippable=True,
            )
        )
    return specs


class LoadConfig(dg.Config):
    """Run config of the load: `deep_reconcile` compares every table by checksums after the
    load, whatever its counts (what `elt run` does every ELT_DEEP_RECONCILE_EVERY runs)."""

    deep_reconcile: bool = False
    full_refresh: bool = False


def build_load_assets(config: LoaderConfig, fks: list[tuple[str, str]]) -> dg.AssetsDefinition:
    checks = [
        dg.AssetCheckSpec(
            RECONCILED,
            asset=raw_key(config, name),
            blocking=True,
            description="source and raw counted in the load's snapshot are equal (after the "
            "repair of the key ranges that differed): loader/extract/settle.py",
        )
        for name in config.tables
    ]

    @dg.multi_asset(
        name="load_raw",
        specs=raw_specs(config, fks),
        check_specs=checks,
        can_subset=True,
        retry_policy=RETRY_POLICY,
        pool=POOL,
        description="`elt load` of the selected tables: one source snapshot, merged into raw, "
        "reconciled and repaired, crash-safe (dlt state committed with the load)",
    )
    def load_raw(
        context: dg.AssetExecutionContext, config: LoadConfig, elt: EltResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        unreconciled = None
        with retried_if_transient(), elt.exclusive(context, "load_raw") as settings:
            loader = load_config(settings.tables_config)
            keys = context.selected_asset_keys
            tables = [name for name in loader.tables if raw_key(loader, name) in keys]
            request = LoadRequest(tables, full_refresh=config.full_refresh)
            result = run_load(settings, loader, request, progress=context.log.info)
            try:
                settle(settings, loader, result, context.log.info, deep=config.deep_reconcile)
            except Unreconciled as exc:
                unreconciled = exc
        if unreconciled is not None:  # raw differs: the checks say where, dbt never runs
            yield from _check_results(context, loader, result)
            raise dg.Failure(description=str(unreconciled), allow_retries=False)
        for table in result.tables.values():
            yield dg.MaterializeResult(asset_key=raw_key(loader, table.table),
                                       metadata=_metadata(result, table))
        yield from _check_results(context, loader, result)

    return load_raw


def _check_results(
    context: dg.AssetExecutionContext, config: LoaderConfig, result: LoadResult
) -> Iterator[dg.AssetCheckResult]:
    selected = context.selected_asset_check_keys
    for table in result.tables.values():
        key = dg.AssetCheckKey(raw_key(config, table.table), RECONCILED)
        if key in selected:
            yield dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=RECONCILED,
                passed=bool(table.reconciled),
                metadata={"source_rows": table.source_rows, "raw_rows": table.raw_rows,
                          "repaired": table.repaired, "dead_letters": table.dead_letters},
            )


def _metadata(result: LoadResult, table: TableResult) -> dict:
    return {
        "load_id": result.load_id or "(nothing new)",
        # plain strings: Dagster serialises only the enums it knows
        "action": str(table.action),
        "mode": str(table.mode),
        "rows_extracted": table.rows_extracted,
        "dagster/row_count": table.raw_rows,
        "watermark": table.watermark or "",
        "caught_up": table.caught_up,
        "drift": "; ".join(table.drift),
    }


def build_freshness_checks(config: LoaderConfig) -> dg.AssetChecksDefinition:
    """dbt's source freshness of every raw table (models/staging/marketplace/
    _marketplace__sources.yml: warn after 26 h, error after 50 h), the same check `elt run`
    runs beside its build."""
    specs = [
        dg.AssetCheckSpec(FRESH, asset=raw_key(config, name),
                          description="`dbt source freshness` on _loaded_at")
        for name in config.tables
    ]

    @dg.multi_asset_check(specs=specs, name="raw_freshness", can_subset=True,
                          retry_policy=RETRY_POLICY)
    def raw_freshness(
        context: dg.AssetCheckExecutionContext, elt: EltResource
    ) -> Iterator[dg.AssetCheckResult]:
        settings = elt.settings()
        with retried_if_transient():
            statuses = source_freshness(settings, settings.home / "dagster" / "freshness")
        for key in context.selected_asset_check_keys:
            status = statuses.get(key.asset_key.path[-1], "not checked")
            yield dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=FRESH,
                passed=status == "pass",
                severity=dg.AssetCheckSeverity.WARN if status == "warn"
                else dg.AssetCheckSeverity.ERROR,
                metadata={"dbt_status": status},
            )

    return raw_freshness


def foreign_keys_or_none(settings, config: LoaderConfig, log) -> list[tuple[str, str]]:
    """The foreign keys between the listed tables, read from the source catalog as `elt run`
    reads them; without a reachable source the assets still load, without those edges."""
    from loader.orchestrate.tasks import source_foreign_keys

    try:
        return source_foreign_keys(settings, config)
    except UserError as exc:
        log.warning(f"the source's foreign keys are unknown ({exc}): the raw assets are "
                    "shown without their dependencies on each other")
        return []
