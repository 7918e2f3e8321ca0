"""The attestor image's HEALTHCHECK: exit 0 when ``GET /readyz`` on this container's own
listener answers 200 (database and backends ready), 1 otherwise, with the reason on stderr.

The image has no curl or shell; this runs on the image's python3 with the standard library
only. The URL is ``$EDGEPROOF_HEALTHCHECK_URL`` if set, else ``/readyz`` on 127.0.0.1 and
``$EDGEPROOF_PORT`` (8080 by default), over HTTPS when ``$EDGEPROOF_TLS__CERT_FILE`` is set.
An HTTPS answer is checked against ``$EDGEPROOF_HEALTHCHECK_CA`` (default: the attestor's own
root, ``$EDGEPROOF_DATA_DIR/ca/root.pem``, which issues ``attestor tls issue`` certificates):
the chain is verified, the host name is not, since the probe dials the loopback address the
certificate need not name. Kubernetes does not use it: probe ``/healthz`` (liveness) and
``/readyz`` (readiness) with ``httpGet`` there.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 4.0


def url() -> str:
    explicit = os.environ.get("EDGEPROOF_HEALTHCHECK_URL")
    if explicit:
        return explicit
    scheme = "https" if os.environ.get("EDGEPROOF_TLS__CERT_FILE") else "http"
    return f"{scheme}://127.0.0.1:{os.environ.get('EDGEPROOF_PORT', '8080')}/readyz"


def tls_context() -> ssl.SSLContext:
    data_dir = os.environ.get("EDGEPROOF_DATA_DIR", "/var/lib/edgeproof")
    context = ssl.create_default_context(
        cafile=os.environ.get("EDGEPROOF_HEALTHCHECK_CA") or f"{data_dir}/ca/root.pem")
    context.check_hostname = False  # loopback; the chain is still verified (CERT_REQUIRED)
    return context


def check(target: str) -> str | None:
    """None when ``target`` answers 200, else why not."""
    if not target.startswith(("http://", "https://")):
        return f"{target}: not an http(s) URL"
    try:
        context = tls_context() if target.startswith("https://") else None
        with urllib.request.urlopen(target, timeout=TIMEOUT_SECONDS,  # noqa: S310
                                    context=context) as reply:
            status = int(reply.status)
    except urllib.error.HTTPError as exc:
        return f"{target}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{target}: {exc}"
    return None if status == 200 else f"{target}: HTTP {status}"


def main() -> int:
    problem = check(url())
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
