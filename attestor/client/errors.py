"""The client's errors: every failure has a stable code and one line of detail.

ClientError (``code``, ``detail``)
├── ApiError: the server answered with a problem (RFC 9457): ``status``, ``problem``
└── TransportError: no answer (``client.unreachable``, ``client.tls``, ``client.timeout``)
    or an answer that is not what the API documents (``client.bad_answer``)
"""

from __future__ import annotations

from attestor.models.common import Problem


class ClientError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class ApiError(ClientError):
    """The server refused (4xx) or failed (5xx); ``problem`` is its typed answer."""

    def __init__(self, status: int, problem: Problem) -> None:
        super().__init__(problem.code, problem.detail or problem.title)
        self.status = status
        self.problem = problem


class TransportError(ClientError):
    """The server could not be reached, its certificate was not trusted, or its answer
    was not the API's."""
