"""marketplace-elt: load a marketplace PostgreSQL into a warehouse and model it with dbt."""

__version__ = "0.1.0"
