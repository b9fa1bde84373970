"""`elt dag`: one picture of the whole flow, layered left to right and labelled by layer."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402

LAYER_COLOURS = {
    "source": "#9ecae1",
    "raw": "#6baed6",
    "seed": "#d9d9d9",
    "staging": "#a1d99b",
    "snapshot": "#c7e9c0",
    "intermediate": "#fdd0a2",
    "quarantine": "#fc9272",
    "marts": "#fdae6b",
    "exposure": "#bcbddc",
}


def _layer(unique_id: str, node: dict) -> str:
    kind = unique_id.split(".", 1)[0]
    if kind in ("seed", "snapshot", "exposure"):
        return kind
    fqn = node.get("fqn", [])
    if len(fqn) > 2 and fqn[1] == "intermediate" and fqn[2] == "quarantine":
        return "quarantine"
    return fqn[1] if len(fqn) > 1 and fqn[1] in LAYER_COLOURS else "marts"


def flow_graph(
    waves: list[list[str]], manifest: dict, fks: list[tuple[str, str]] = ()
) -> nx.DiGraph:
    """Source tables (by load wave, foreign keys between them) -> raw -> every dbt node."""
    graph = nx.DiGraph()
    for n, wave in enumerate(waves):
        for table in wave:
            graph.add_node(f"src.{table}", label=table, layer="source", column=n)
    for child, parent in fks:
        if f"src.{child}" in graph and f"src.{parent}" in graph and child != parent:
            graph.add_edge(f"src.{parent}", f"src.{child}", fk=True)
    for uid, source in manifest["sources"].items():
        graph.add_node(uid, label=source["name"], layer="raw")
        if f"src.{source['name']}" in graph:
            graph.add_edge(f"src.{source['name']}", uid)
    wanted = ("model.", "seed.", "snapshot.")
    nodes = {k: v for k, v in manifest["nodes"].items() if k.startswith(wanted)}
    nodes |= manifest.get("exposures", {})
    for uid, node in nodes.items():
        graph.add_node(uid, label=node["name"], layer=_layer(uid, node))
    for uid in nodes:
        for parent in manifest["parent_map"].get(uid, []):
            if parent in graph:
                graph.add_edge(parent, uid)
    return graph


def _positions(graph: nx.DiGraph, n_waves: int) -> tuple[dict, dict[str, float]]:
    order = ["raw", "seed", "staging", "snapshot", "intermediate", "quarantine", "marts",
             "exposure"]
    columns: dict[float, list[str]] = {}
    layer_x = {name: n_waves + i for i, name in enumerate(order)}
    for node, data in graph.nodes(data=True):
        x = data["column"] if data["layer"] == "source" else layer_x[data["layer"]]
        columns.setdefault(x, []).append(node)
    pos = {}
    for x, members in columns.items():
        members.sort(key=lambda n: graph.nodes[n]["label"])
        for i, node in enumerate(members):
            pos[node] = (x * 2.6, -(i - (len(members) - 1) / 2))
    return pos, layer_x


def draw(
    waves: list[list[str]], manifest_path: Path, output: Path, fks: list[tuple[str, str]] = ()
) -> Path:
    manifest = json.loads(manifest_path.read_text())
    graph = flow_graph(waves, manifest, fks)
    pos, layer_x = _positions(graph, len(waves))
    xs = {p[0] for p in pos.values()}
    tallest = max(sum(1 for p in pos.values() if p[0] == x) for x in xs)
    fig, ax = plt.subplots(figsize=(2.3 * len(xs) + 2, max(7, tallest * 0.62 + 2)))
    fk_edges = [e for e in graph.edges if graph.edges[e].get("fk")]
    flow_edges = [e for e in graph.edges if not graph.edges[e].get("fk")]
    nx.draw_networkx_edges(graph, pos, edgelist=flow_edges, ax=ax, edge_color="#777777",
                           alpha=0.5, arrows=True, arrowsize=9, width=0.8, node_size=0,
                           connectionstyle="arc3,rad=0.0")
    nx.draw_networkx_edges(graph, pos, edgelist=fk_edges, ax=ax, edge_color="#2171b5",
                           style="dashed", arrows=True, arrowsize=10, width=1.2, node_size=0,
                           connectionstyle="arc3,rad=0.15")
    for layer, colour in LAYER_COLOURS.items():
        members = [n for n in graph if graph.nodes[n]["layer"] == layer]
        nx.draw_networkx_labels(
            graph, pos, ax=ax, font_size=8, labels={n: graph.nodes[n]["label"] for n in members},
            bbox={"boxstyle": "round,pad=0.35", "facecolor": colour, "edgecolor": "#555555",
                  "linewidth": 0.6},
        )
    top = max(p[1] for p in pos.values()) + 1.3
    for n in range(len(waves)):
        ax.text(n * 2.6, top, f"source\nwave {n + 1}", ha="center", va="bottom", fontsize=11,
                fontweight="bold")
    for name, x in layer_x.items():
        if any(graph.nodes[v]["layer"] == name for v in graph):
            ax.text(x * 2.6, top, name, ha="center", va="bottom", fontsize=11,
                    fontweight="bold")
    ax.set_title("marketplace-elt: source tables in foreign-key load order (dashed: foreign "
                 "keys) → raw → dbt staging, snapshots, intermediate, quarantine, marts",
                 fontsize=13, pad=30)
    ax.set_ylim(min(p[1] for p in pos.values()) - 1, top + 1.2)
    ax.set_xlim(-1.3, max(xs) + 1.3)
    ax.axis("off")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
