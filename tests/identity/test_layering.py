"""identity/ is the pure core: it never imports the service, the agent, a web framework,
the ORM, a database driver or Vault's client (DESIGN.md: dependencies point one way)."""

from __future__ import annotations

import ast
from pathlib import Path

import identity

FORBIDDEN = ("attestor", "agent", "fastapi", "starlette", "sqlmodel", "sqlalchemy",
             "psycopg", "hvac", "uvicorn", "tpm2_pytss.ESAPI")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_identity_imports_nothing_of_the_service_or_its_frameworks() -> None:
    root = Path(identity.__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert any(p.name == "appraisal.py" for p in modules)
    offenders = [f"{path.relative_to(root)}: {name}" for path in modules
                 for name in _imports(path)
                 if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert offenders == []
