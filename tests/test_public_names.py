"""Every name one package imports from another (storage, harvest, curate, train) is in that module's `__all__`.

`__all__` is each module's public API (DESIGN.md: explicit public API). An import across packages of a name
outside it reaches into another package's internals, which then cannot change without breaking a stranger.
Read from the source (ast), so nothing is imported or run.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("storage", "harvest", "curate", "train")


def module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def public_names(module: str) -> frozenset[str] | None:
    """The module's `__all__` (None when it has none)."""
    path = module_path(module)
    assert path is not None, module
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
                return frozenset(ast.literal_eval(node.value))
    return None


def cross_package_imports() -> list[tuple[str, int, str, str]]:
    """(file, line, module, name) of every `from M import name` whose M is in another of the packages."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                    continue
                top = node.module.split(".")[0]
                if top in PACKAGES and top != package:
                    for alias in node.names:
                        found.append((str(path.relative_to(ROOT)), node.lineno, node.module, alias.name))
    return found


def test_cross_package_imports_use_public_names_only() -> None:
    imports = cross_package_imports()
    assert len(imports) > 100  # the walk found the code
    outside = []
    for file, line, module, name in imports:
        if module_path(f"{module}.{name}") is not None:  # a submodule, not a name
            continue
        names = public_names(module)
        if names is None or name not in names:
            outside.append(f"{file}:{line}: {name} is not in {module}.__all__")
    assert not outside, "\n".join(outside)
