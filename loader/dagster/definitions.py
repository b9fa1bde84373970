"""The Dagster code location: `dagster dev -m loader.dagster.definitions` (`make dagster`)."""

from loader.dagster.build import build_definitions

defs = build_definitions()
