"""The README's Layout section matches the tree: what it names exists, and it names every
module of loader/ (directly, or through the folder that holds it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layout_paths() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    paths = []
    for line in block.splitlines():
        # the first column: one path, or several separated by commas
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        paths += [n.strip() for n in names.split(",") if n.strip()]
    return paths


def test_every_path_of_the_layout_exists() -> None:
    missing = [p for p in _layout_paths() if not (ROOT / p).exists()]
    assert missing == [], f"the README's Layout names paths that are gone: {missing}"


def test_the_layout_names_every_module_of_the_loader() -> None:
    named = [p.rstrip("/") for p in _layout_paths() if p.startswith("loader/")]
    unnamed = []
    for module in sorted((ROOT / "loader").rglob("*.py")):
        relative = module.relative_to(ROOT).as_posix()
        if module.name == "__init__.py" and module.parent != ROOT / "loader":
            relative = module.parent.relative_to(ROOT).as_posix()
        if relative == "loader/__init__.py":
            continue
        if module.name == "__init__.py" and any(n.startswith(relative + "/") for n in named):
            continue  # a package whose modules are named one by one
        if not any(relative == n or relative.startswith(n + "/") for n in named):
            unnamed.append(relative)
    assert unnamed == [], f"add these to the README's Layout section: {unnamed}"
