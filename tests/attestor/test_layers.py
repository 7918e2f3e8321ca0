"""Dependencies point one way (issue 15): the API imports services and models; services,
models and the client never import the API or FastAPI, so the client and the CLI's
remote mode load without the web framework's routes and a service is callable alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOWER = ("attestor/services", "attestor/models", "attestor/client")
FORBIDDEN = ("attestor.api", "fastapi", "starlette")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_services_models_and_client_do_not_import_the_api() -> None:
    files = [p for folder in LOWER for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 20
    wrong = [f"{p.relative_to(ROOT)}: {name}" for p in files for name in _imports(p)
             if name.startswith(FORBIDDEN)]
    assert wrong == []


def test_the_client_loads_without_the_web_framework() -> None:
    code = ("import sys, attestor.client, attestor.client.config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('fastapi', 'starlette', 'uvicorn', 'sqlmodel', 'sqlalchemy')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,  # noqa: S603
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"
