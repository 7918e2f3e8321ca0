"""uvicorn with the ASGI TLS extension: the client certificate chain the TLS layer
verified, in ``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM, leaf first).

uvicorn verifies client certificates (``ssl_cert_reqs``, ``ssl_ca_certs``) but does not
hand them to the application; the reference update server binds the device's
attestation-result token to that certificate, so it needs it. A subclass of uvicorn's
httptools protocol adds the extension to every request's scope on the connection.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def verified_chain(ssl_object: ssl.SSLObject) -> list[str]:
    """The peer's verified chain as PEM strings (leaf first); empty without a client cert.
    ``SSLObject.get_verified_chain`` is public from Python 3.13; 3.10-3.12 have it on
    the private ``_sslobj``."""
    getter = getattr(ssl_object, "get_verified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_verified_chain", None)
    if getter is None:
        raise RuntimeError("this Python cannot return a TLS peer's verified chain")
    pems = []
    for cert in getter() or []:
        if isinstance(cert, bytes):
            pems.append(ssl.DER_cert_to_PEM_cert(cert))
        else:  # _ssl.Certificate (3.10-3.12)
            pems.append(cert.public_bytes(ssl._ssl.ENCODING_PEM))  # type: ignore[attr-defined]
    return pems


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return {"client_cert_chain": verified_chain(ssl_object),
            "tls_version": ssl_object.version(), "cipher_suite": cipher[0] if cipher else None}


class ClientCertificateProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol, plus the ASGI TLS extension."""

    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._tls = tls_extension(transport)  # the handshake is complete by now

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]
