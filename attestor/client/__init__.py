"""A typed Python client for the attestor's operator API (``OperatorClient``), and where
the ``attestor`` CLI finds its server and token (``attestor.client.config``)."""

from attestor.client.api import OperatorClient
from attestor.client.errors import ApiError, ClientError, TransportError

__all__ = ["ApiError", "ClientError", "OperatorClient", "TransportError"]
