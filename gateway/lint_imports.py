"""Checks the import direction of DESIGN.md: core ← drivers ← runtime ← cli; web sees core, store, config.

Run as ``python -m gateway.lint_imports``; exits 1 listing every import that breaks the rule.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# package prefix -> prefixes of our own code it may import
ALLOWED: dict[str, tuple[str, ...]] = {
    "gateway.core": ("gateway.core",),
    "gateway.drivers": ("gateway.core", "gateway.drivers", "hw"),
    "gateway.store": ("gateway.core", "gateway.store"),
    "gateway.config": ("gateway.core",),
    "gateway.runtime": ("gateway.core", "gateway.drivers", "gateway.store", "gateway.config", "gateway.runtime",
                        "hw", "web"),
    "web": ("gateway.core", "gateway.store", "gateway.config", "web"),
}
OURS = ("gateway", "web", "hw")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")[: -node.level] if not path.name == "__init__.py" else \
                    module.split(".")[: len(module.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name in OURS:  # `from gateway import config` imports gateway.config
                out += [(node.lineno, f"{name}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, name))
    return out


def check() -> list[str]:
    problems = []
    for pkg_dir in ("gateway", "web"):
        for path in sorted((ROOT / pkg_dir).rglob("*.py")):
            module = _module_name(path)
            rule = next((ALLOWED[p] for p in sorted(ALLOWED, key=len, reverse=True)
                         if module == p or module.startswith(p + ".")), None)
            if rule is None:
                continue
            for lineno, name in _imports(path, module):
                if not name.startswith(OURS) or name.split(".")[0] not in OURS:
                    continue
                if not any(name == a or name.startswith(a + ".") for a in rule):
                    problems.append(f"{path.relative_to(ROOT)}:{lineno}: {module} must not import {name}")
    return problems


def main() -> int:
    problems = check()
    for p in problems:
        print(p)
    if problems:
        return 1
    print("import direction: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
