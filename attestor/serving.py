"""How `attestor serve` listens: HTTPS from ``[tls]``, or plain HTTP only when asked for.

Plain HTTP is refused unless the operator says why it is safe: ``--dev``, or
``--insecure-http`` (``tls.insecure_http``) because a proxy or Ingress in front
terminates TLS. The certificate, key and client CA are loaded here once before
uvicorn starts, so a wrong path, a key that is not the certificate's or an expired
certificate stops the start with one line instead of a traceback.
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509

from attestor.settings import ConfigError, Settings

PLAIN_HTTP_REFUSED = (
    "refusing to serve plain HTTP: give --tls-cert and --tls-key (`attestor tls issue` makes "
    "them), or --insecure-http when a proxy in front terminates TLS (--dev allows plain HTTP "
    "for development)"
)


def _leaf(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"tls.cert_file {path}: not a readable PEM certificate ({exc})") from exc


def uvicorn_tls_options(settings: Settings, now: dt.datetime) -> dict[str, Any]:
    """uvicorn's ``ssl_*`` arguments for the API listener (empty for plain HTTP)."""
    tls = settings.tls
    if tls.cert_file is None or tls.key_file is None:
        if settings.dev or tls.insecure_http:
            return {}
        raise ConfigError(PLAIN_HTTP_REFUSED)
    leaf = _leaf(tls.cert_file)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise ConfigError(f"tls.cert_file {tls.cert_file} is valid only from "
                          f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                          f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; issue a new one")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls.key_file {tls.key_file}: cannot be used with "
                          f"{tls.cert_file} ({exc.strerror or exc})") from exc
    options: dict[str, Any] = {"ssl_certfile": str(tls.cert_file),
                               "ssl_keyfile": str(tls.key_file)}
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"tls.client_ca_file {tls.client_ca_file}: "
                              f"{exc.strerror or exc}") from exc
        options |= {"ssl_ca_certs": str(tls.client_ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options
