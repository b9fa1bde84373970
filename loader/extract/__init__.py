"""The dlt loader: incremental extraction from a PostgreSQL source into raw_marketplace."""
