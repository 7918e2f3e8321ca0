"""``python -m deploy.examples.update_server``: the reference update server under uvicorn.

Environment: the app's ``UPDATE_SERVER_*`` (deploy/examples/update_server/app.py,
``config_from_env``), plus ``UPDATE_SERVER_TLS_CERT`` and ``UPDATE_SERVER_TLS_KEY`` (its
HTTPS certificate, e.g. from ``attestor tls issue``), ``UPDATE_SERVER_HOST`` (127.0.0.1)
and ``UPDATE_SERVER_PORT`` (8443). In ``mtls`` mode TLS is required and so is a client
certificate that chains to ``UPDATE_SERVER_CA`` (the attestor's CA): the same roots the
app verifies it against again. In ``signature`` mode TLS is optional (a proxy in front may
terminate it) and no client certificate is asked for.
"""

from __future__ import annotations

import os
import ssl
import sys
from typing import Any

import uvicorn

from deploy.examples.update_server.app import Config, config_from_env, create_app
from deploy.examples.update_server.tls import ClientCertificateProtocol


def server_options(config: Config, cert: str | None, key: str | None,
                   ca_file: str) -> dict[str, Any]:
    """uvicorn's TLS options for ``config``: in mtls mode TLS with a required client
    certificate from ``ca_file`` (the attestor's CA, which ``config.roots_pem`` holds),
    and the protocol that passes the verified chain to the app."""
    tls: dict[str, Any] = {"ssl_certfile": cert, "ssl_keyfile": key} if cert and key else {}
    if config.client_auth == "mtls":
        if not tls:
            raise ValueError("mtls needs UPDATE_SERVER_TLS_CERT and UPDATE_SERVER_TLS_KEY")
        tls |= {"ssl_ca_certs": ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED,
                "http": ClientCertificateProtocol}
    return tls


def main() -> int:
    env = os.environ
    try:
        config = config_from_env()
        tls = server_options(config, env.get("UPDATE_SERVER_TLS_CERT"),
                             env.get("UPDATE_SERVER_TLS_KEY"), env["UPDATE_SERVER_CA"])
    except (KeyError, ValueError, OSError) as exc:
        print(f"update server: bad configuration: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(config), host=env.get("UPDATE_SERVER_HOST", "127.0.0.1"),
                port=int(env.get("UPDATE_SERVER_PORT", "8443")), log_level="info", **tls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
