"""One authenticated connection to Vault (hvac), shared by the PKI issuer and the KV store.

Auth: a token, AppRole or Kubernetes. The token's lease is tracked; ``maintain``
(run in the background) renews it at two thirds of its lifetime and logs in
again when renewal is refused or the lease cannot be extended. A call refused
with 403 logs in again once (AppRole, Kubernetes) before it gives up.

Every failure becomes a typed reason, so an attestation fails closed with it:
sealed (503), unreachable (connection, TLS, timeout) or refused (anything else
Vault answers with an error). Tokens and secret ids never reach a log line or an
error message; Vault's own error strings (which never contain them) do.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from attestor.vault_settings import VaultSettings
from identity.errors import BackendUnavailable, VaultRefused, VaultSealed, VaultUnreachable

log = logging.getLogger("attestor.vault")
T = TypeVar("T")
RENEW_AT = 2 / 3
RELOGIN_METHODS = frozenset({"approle", "kubernetes"})


@dataclass(frozen=True, slots=True)
class Lease:
    """The token's lease: ``expires_at`` None for a token that never expires."""

    obtained_at: dt.datetime
    expires_at: dt.datetime | None
    renewable: bool

    def due(self, now: dt.datetime) -> bool:
        if self.expires_at is None:
            return False
        return now >= self.obtained_at + (self.expires_at - self.obtained_at) * RENEW_AT

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def _read_file(path: Any, what: str) -> str:
    try:
        return str(path.read_text().strip())
    except OSError as exc:
        raise VaultRefused(f"cannot read the {what} file: {exc.strerror}") from exc


def mapped(exc: Exception) -> BackendUnavailable:
    """The typed, fail-closed reason for a failed Vault call."""
    if isinstance(exc, hvac.exceptions.VaultDown):
        return VaultSealed("Vault is sealed or unavailable (503)")
    if isinstance(exc, requests.exceptions.RequestException):
        return VaultUnreachable(f"Vault cannot be reached: {type(exc).__name__}")
    if isinstance(exc, hvac.exceptions.VaultError):
        errors = "; ".join(str(e) for e in (exc.errors or [])[:3]) or type(exc).__name__
        return VaultRefused(f"Vault refused: {errors[:300]}")
    return VaultRefused(f"unexpected answer from Vault: {type(exc).__name__}")


class VaultConnection:
    def __init__(self, settings: VaultSettings, clock: Callable[[], dt.datetime]) -> None:
        self.settings = settings
        self.clock = clock
        verify: bool | str = str(settings.ca_bundle) if settings.ca_bundle else True
        self.client = hvac.Client(url=settings.address, verify=verify,
                                  timeout=settings.timeout_seconds,
                                  namespace=settings.namespace)
        self.lease: Lease | None = None
        self._lock = threading.Lock()

    # -- auth ----------------------------------------------------------------
    def login(self) -> Lease:
        """Authenticate (or, for token auth, look the token up); returns the lease."""
        s = self.settings
        now = self.clock()
        try:
            if s.auth == "token":
                token = (s.token.get_secret_value() if s.token
                         else _read_file(s.token_file, "Vault token"))
                self.client.token = token
                data = self.client.auth.token.lookup_self()["data"]
                ttl, renewable = int(data.get("ttl") or 0), bool(data.get("renewable"))
            else:
                if s.auth == "approle":
                    secret_id = (s.secret_id.get_secret_value() if s.secret_id
                                 else _read_file(s.secret_id_file, "AppRole secret_id"))
                    answer = self.client.auth.approle.login(
                        s.role_id, secret_id, mount_point=s.approle_mount)
                else:
                    jwt = _read_file(s.kubernetes_jwt_file, "service-account token")
                    answer = self.client.auth.kubernetes.login(
                        s.kubernetes_role, jwt, mount_point=s.kubernetes_mount)
                auth = answer["auth"]
                ttl, renewable = int(auth.get("lease_duration") or 0), bool(auth.get("renewable"))
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            raise mapped(exc) from exc
        except (KeyError, TypeError) as exc:
            raise VaultRefused("Vault's login answer lacks auth data") from exc
        lease = Lease(now, now + dt.timedelta(seconds=ttl) if ttl else None, renewable)
        self.lease = lease
        log.info("vault login", extra={"method": s.auth, "ttl": ttl, "renewable": renewable})
        return lease

    def renew(self) -> Lease:
        """Renew the token; log in again if it cannot be renewed or would not be extended."""
        now = self.clock()
        old = self.lease
        if old is not None and old.renewable and not old.expired(now):
            try:
                auth = self.client.auth.token.renew_self()["auth"]
                ttl = int(auth.get("lease_duration") or 0)
                lease = Lease(now, now + dt.timedelta(seconds=ttl) if ttl else None,
                              bool(auth.get("renewable")))
                if old.expires_at is None or lease.expires_at is None \
                        or lease.expires_at > old.expires_at:
                    self.lease = lease
                    log.info("vault token renewed", extra={"ttl": ttl})
                    return lease
            except (hvac.exceptions.VaultError, requests.exceptions.RequestException,
                    KeyError, TypeError) as exc:
                log.warning("vault token renewal failed: %s", mapped(exc).detail)
        if self.settings.auth in RELOGIN_METHODS:
            return self.login()
        if old is not None and old.expired(now):
            raise VaultRefused("the Vault token has expired and token auth cannot log in again")
        return old if old is not None else self.login()

    def maintain(self) -> None:
        """Background duty: log in if needed, renew when two thirds of the lease are gone."""
        self._ensure(Lease.due)

    def _ensure(self, stale: Callable[[Lease, dt.datetime], bool] = Lease.expired) -> None:
        """Log in if there is no lease; renew (or log in again) if it is ``stale``."""
        with self._lock:
            if self.lease is None:
                self.login()
            elif stale(self.lease, self.clock()):
                self.renew()

    # -- calls ---------------------------------------------------------------
    def call(self, fn: Callable[[hvac.Client], T]) -> T:
        """Run ``fn`` with the authenticated client; map failures to typed reasons."""
        self._ensure()
        try:
            return fn(self.client)
        except hvac.exceptions.Forbidden as exc:
            if self.settings.auth not in RELOGIN_METHODS:
                raise mapped(exc) from exc
            log.warning("vault refused the token (403): logging in again")
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            raise mapped(exc) from exc
        with self._lock:
            self.login()
        try:
            return fn(self.client)
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as exc:
            raise mapped(exc) from exc

    def health(self) -> None:
        """Raise the fail-closed reason unless Vault is unsealed, active and we hold a lease."""
        try:
            answer = self.client.sys.read_health_status(method="GET")
        except requests.exceptions.RequestException as exc:
            raise mapped(exc) from exc
        status = answer.status_code if isinstance(answer, requests.Response) else 200
        body = answer if isinstance(answer, dict) else {}
        if isinstance(answer, requests.Response):
            try:
                body = answer.json()
            except ValueError:
                body = {}
        if status == 503 or body.get("sealed"):
            raise VaultSealed("Vault is sealed")
        if status == 501:
            raise VaultRefused("Vault is not initialised")
        if status not in (200, 429, 472, 473):
            raise VaultRefused(f"Vault health answered {status}")
        self._ensure()

