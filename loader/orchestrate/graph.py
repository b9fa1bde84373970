"""The load order: foreign keys read from the source catalog, grouped into parallel waves."""

from __future__ import annotations

import networkx as nx
from psycopg2.extensions import connection

from loader.config import UserError

FK_SQL = """
    select child.relname, parent.relname
    from pg_constraint c
    join pg_class child on child.oid = c.conrelid
    join pg_class parent on parent.oid = c.confrelid
    join pg_namespace n on n.oid = child.relnamespace
    where c.contype = 'f' and n.nspname = %s
"""


class DependencyCycle(UserError, ValueError):
    """The foreign keys between the listed tables form a cycle."""


def foreign_keys(conn: connection, schema: str) -> list[tuple[str, str]]:
    """(child, parent) pairs of the foreign keys in `schema`."""
    with conn.cursor() as cur:
        cur.execute(FK_SQL, (schema,))
        return [(child, parent) for child, parent in cur.fetchall()]


def table_graph(tables: list[str], fks: list[tuple[str, str]]) -> nx.DiGraph:
    """An edge parent -> child for every foreign key between two listed tables."""
    graph = nx.DiGraph()
    graph.add_nodes_from(tables)
    for child, parent in fks:
        if child in graph and parent in graph and child != parent:
            graph.add_edge(parent, child)
    return graph


def load_waves(graph: nx.DiGraph) -> list[list[str]]:
    """Tables in waves: every parent in an earlier wave than its children; a wave's tables
    load in parallel. A cycle is reported with the tables in it."""
    try:
        return [sorted(wave) for wave in nx.topological_generations(graph)]
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(graph)
        path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
        raise DependencyCycle(
            f"the foreign keys form a cycle: {path}. Load order cannot be derived; "
            "drop one of these tables from tables.yml or load them together with mode full"
        ) from None
