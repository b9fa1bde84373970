"""The source simulator: a marketplace's operational PostgreSQL that changes over time."""
