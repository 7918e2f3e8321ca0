"""Probes of the attestor's backends, shared by ``/readyz`` and the metrics.

Each probe answers ``"ok"`` or ``"unavailable: <reason code>"`` (never a cause
with detail: that goes to the logs), and never raises for a backend fault.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from attestor.db.engine import database_error
from attestor.services.context import Services
from identity.errors import IdentityError

OK = "ok"


def probe(check: Callable[[], object]) -> str:
    try:
        check()
    except IdentityError as exc:
        return f"unavailable: {exc.code}"
    except sa.exc.DBAPIError as exc:
        return f"unavailable: {database_error(exc).code}"
    except sa.exc.SQLAlchemyError as exc:
        return f"unavailable: {type(exc).__name__}"
    return OK


def database(svc: Services) -> None:
    with svc.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def checks(svc: Services) -> dict[str, Callable[[], object]]:
    """The backend checks by name: what ``/readyz`` reports, and Vault when configured
    (``/readyz`` sees Vault through the issuer and secret store that use it)."""
    found: dict[str, Callable[[], object]] = {
        "database": lambda: database(svc),
        "issuer": lambda: svc.issuer.health(svc.clock()),
        "secrets": svc.secrets.health,
        "signing_key": lambda: svc.signer,
    }
    if svc.vault is not None:
        found["vault"] = svc.vault.health
    return found


def readiness(svc: Services) -> dict[str, str]:
    return {name: probe(check) for name, check in checks(svc).items() if name != "vault"}
