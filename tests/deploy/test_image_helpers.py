"""The small programs the image build and the attestor image's HEALTHCHECK run."""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.images import healthcheck, requirements
from tests.deploy.images import ROOT

PYPROJECT = ROOT / "pyproject.toml"


def test_requirements_follow_pyproject() -> None:
    data = tomllib.loads(PYPROJECT.read_text())
    runtime = requirements.requirements(PYPROJECT, "runtime")
    assert runtime == data["project"]["dependencies"]
    assert requirements.requirements(PYPROJECT, "build") == data["build-system"]["requires"]
    wheelhouse = requirements.requirements(PYPROJECT, "wheelhouse")
    assert wheelhouse[: len(runtime)] == runtime
    assert "pip" in wheelhouse and "setuptools>=69" in wheelhouse
    with pytest.raises(ValueError, match="unknown requirement kind"):
        requirements.requirements(PYPROJECT, "test")
    assert requirements.main(["requirements.py", str(PYPROJECT)]) == 2


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, int]]]:
    """An HTTP server whose /readyz answers the status a test sets."""
    answer = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(answer["status"] if self.path == "/readyz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", answer
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_healthcheck_passes_only_on_200(server: tuple[str, dict[str, int]],
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    base, answer = server
    port = base.rsplit(":", 1)[1]
    monkeypatch.delenv("EDGEPROOF_HEALTHCHECK_URL", raising=False)
    monkeypatch.setenv("EDGEPROOF_PORT", port)
    assert healthcheck.url() == f"http://127.0.0.1:{port}/readyz"
    assert healthcheck.main() == 0
    answer["status"] = 503
    assert healthcheck.main() == 1
    assert "HTTP 503" in capsys.readouterr().err
    monkeypatch.setenv("EDGEPROOF_HEALTHCHECK_URL", f"{base}/elsewhere")
    assert healthcheck.check(healthcheck.url()) == f"{base}/elsewhere: HTTP 404"


def test_healthcheck_fails_when_nothing_listens_or_the_url_is_not_http() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_address[1]
    problem = healthcheck.check(f"http://127.0.0.1:{port}/readyz")
    assert problem is not None and problem.startswith(f"http://127.0.0.1:{port}/readyz: ")
    assert healthcheck.check("file:///etc/passwd") == "file:///etc/passwd: not an http(s) URL"
