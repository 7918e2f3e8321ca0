"""Console sessions: a sealed cookie (HMAC-SHA256) holding who signed in, their role,
the session's CSRF token, and when it started and was last used.

The cookie is HttpOnly, SameSite=Strict and Secure outside development. It is
re-sealed on every page so the idle timeout slides; it ends ``idle_seconds`` after
the last request and ``max_seconds`` after sign-in, and a session started with an
operator token ends when that token expires. The sealing key is derived from
the secret-store key file (shared by every replica), or the CA passphrase without it.
Times come from the attestor's clock.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from attestor.auth import Principal
from attestor.settings import Settings

COOKIE = "edgeproof_console"
OIDC_COOKIE = "edgeproof_console_oidc"
CONSOLE_ROLES = ("admin", "auditor")


def session_key(settings: Settings, purpose: str = "console-session") -> bytes:
    path = settings.secret_key_file
    material = path.read_bytes() if path.is_file() else settings.ca_passphrase()
    return HKDF(hashes.SHA256(), 32, salt=None,
                info=f"edgeproof {purpose}".encode()).derive(material)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(key: bytes, payload: dict[str, object]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unseal(key: bytes, value: str) -> dict[str, object] | None:
    body, _, mac = value.partition(".")
    try:
        expected = hmac.new(key, body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        data = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class ConsoleSession:
    kind: str  # "token" (a local or OIDC bearer token was presented)
    subject: str
    role: str
    via: str  # "token" or "oidc"
    csrf: str
    started: float
    seen: float
    until: float | None = None  # the presented token's expiry: no session outlives it

    @property
    def principal(self) -> Principal:
        return Principal(self.kind, self.subject, role=self.role)

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def start(cls, principal: Principal, via: str, now: dt.datetime,
              until: float | None = None) -> ConsoleSession:
        stamp = now.timestamp()
        return cls(principal.kind, principal.subject, principal.role or "", via,
                   secrets.token_urlsafe(24), stamp, stamp, until)

    def touched(self, now: dt.datetime) -> ConsoleSession:
        return ConsoleSession(**{**asdict(self), "seen": now.timestamp()})

    def seal(self, key: bytes) -> str:
        return seal(key, asdict(self))


def open_session(key: bytes, cookie: str | None, now: dt.datetime, idle: int,
                 longest: int) -> ConsoleSession | None:
    """The session a cookie holds, if it is genuine, unexpired and of a console role."""
    data = unseal(key, cookie) if cookie else None
    if data is None:
        return None
    try:
        found = ConsoleSession(**data)  # type: ignore[arg-type]
    except TypeError:
        return None
    stamp = now.timestamp()
    if (found.role not in CONSOLE_ROLES or stamp - found.seen > idle
            or stamp - found.started > longest or found.seen > stamp + 60
            or (found.until is not None and stamp >= found.until)):
        return None
    return found


def check_csrf(found: ConsoleSession, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(found.csrf.encode(),
                                                   (presented or "").encode())
