"""The attestor image's HEALTHCHECK: exit 0 when ``GET /readyz`` on this container's own
listener answers 200 (database and backends ready), 1 otherwise, with the reason on stderr.

The image has no curl or shell; this runs on the image's python3 with the standard library
only. The URL is ``$EDGEPROOF_HEALTHCHECK_URL`` if set, else
``http://127.0.0.1:$EDGEPROOF_PORT/readyz`` (port 8080 by default). Kubernetes does not use
it: probe ``/healthz`` (liveness) and ``/readyz`` (readiness) with ``httpGet`` there.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 4.0


def url() -> str:
    explicit = os.environ.get("EDGEPROOF_HEALTHCHECK_URL")
    if explicit:
        return explicit
    return f"http://127.0.0.1:{os.environ.get('EDGEPROOF_PORT', '8080')}/readyz"


def check(target: str) -> str | None:
    """None when ``target`` answers 200, else why not."""
    if not target.startswith(("http://", "https://")):
        return f"{target}: not an http(s) URL"
    try:
        with urllib.request.urlopen(target, timeout=TIMEOUT_SECONDS) as reply:  # noqa: S310
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
