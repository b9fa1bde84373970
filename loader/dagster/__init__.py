"""The pipeline as Dagster assets (the optional `dagster` extra): one code location over the
loader and the dbt project that `elt run` runs, sharing their code rather than copying it."""
