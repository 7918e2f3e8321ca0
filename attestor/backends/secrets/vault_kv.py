"""Secret store backend ``vault``: KV v2, paths templated with the device's attributes.

``kv_path`` (default ``edgeproof/{device_class}/{name}``) may use ``device_class``,
``device_id``, ``model`` and ``name``; device attributes must be single safe path
segments, so a device record cannot steer a read elsewhere. The value is the
``kv_field`` key of the secret's data. With ``wrap_ttl_seconds`` set, ``release``
asks Vault to response-wrap the read: the attestor handles only a single-use token
that the device unwraps at Vault itself. Nothing read is stored or logged here.
"""

from __future__ import annotations

import re
from typing import Any

import hvac
import hvac.exceptions

from attestor.backends.secrets import SecretSubject, SecretValue, WrappedSecret
from attestor.backends.vault.connection import VaultConnection
from identity.errors import ServiceError, VaultRefused

SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")


class VaultSecretShape(ServiceError):
    code = "secrets.vault"


class VaultKv:
    def __init__(self, connection: VaultConnection) -> None:
        self.vault = connection
        s = connection.settings
        self.mount, self.template, self.field = s.kv_mount, s.kv_path, s.kv_field
        self.wrap_ttl = s.wrap_ttl_seconds
        self.device_address = (s.device_address or s.address).rstrip("/")

    def path(self, name: str, subject: SecretSubject) -> str:
        if not NAME.fullmatch(name) or ".." in name.split("/"):
            raise VaultRefused(f"secret name {name!r} is not a safe Vault path")
        fields = {"device_class": subject.device_class, "device_id": subject.device_id,
                  "model": subject.model or "unknown"}
        for key, value in fields.items():
            if not SEGMENT.fullmatch(value):
                raise VaultRefused(f"device {key} {value!r} cannot be used in a Vault path")
        return self.template.format(name=name, **fields)

    def _get(self, path: str, version: int | None, wrap: bool) -> Any:
        def get(client: hvac.Client) -> Any:
            try:
                if not wrap:
                    return client.secrets.kv.v2.read_secret_version(
                        path=path, version=version, mount_point=self.mount,
                        raise_on_deleted_version=True)
                return client.adapter.get(
                    f"/v1/{self.mount}/data/{path}", params={"version": version},
                    headers={"X-Vault-Wrap-TTL": f"{self.wrap_ttl}s"})
            except hvac.exceptions.InvalidPath:
                return None
        return self.vault.call(get)

    def read(self, name: str, subject: SecretSubject) -> SecretValue | None:
        answer = self._get(self.path(name, subject), None, wrap=False)
        if answer is None:
            return None
        try:
            data, version = answer["data"]["data"], int(answer["data"]["metadata"]["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VaultSecretShape(f"Vault's answer for {name!r} is not a KV v2 read") from exc
        value = data.get(self.field) if isinstance(data, dict) else None
        if not isinstance(value, str):
            raise VaultSecretShape(f"secret {name!r} has no text field {self.field!r}")
        return SecretValue(name, version, value.encode())

    def current_version(self, name: str, subject: SecretSubject) -> int | None:
        path = self.path(name, subject)

        def meta(client: hvac.Client) -> Any:
            try:
                return client.secrets.kv.v2.read_secret_metadata(path, mount_point=self.mount)
            except hvac.exceptions.InvalidPath:
                return None
        answer = self.vault.call(meta)
        if answer is None:
            return None
        try:
            current = int(answer["data"]["current_version"])
            state = answer["data"]["versions"][str(current)]
        except (KeyError, TypeError, ValueError) as exc:
            raise VaultSecretShape(f"Vault's metadata for {name!r} is not KV v2's") from exc
        if current == 0 or state.get("destroyed") or state.get("deletion_time"):
            return None
        return current

    def release(self, name: str, subject: SecretSubject) -> SecretValue | WrappedSecret | None:
        if not self.wrap_ttl:
            return self.read(name, subject)
        version = self.current_version(name, subject)
        if version is None:
            return None
        answer = self._get(self.path(name, subject), version, wrap=True)
        if answer is None:
            return None  # deleted between the two reads
        try:
            info = answer["wrap_info"]
            return WrappedSecret(name=name, version=version, token=str(info["token"]),
                                 ttl_seconds=int(info["ttl"]), address=self.device_address,
                                 field=self.field)
        except (KeyError, TypeError, ValueError) as exc:
            raise VaultRefused("Vault did not wrap the response (is X-Vault-Wrap-TTL "
                               "allowed by policy?)") from exc

    def wrapping_token_valid(self, token: str) -> bool:
        """True while a wrapping token is unused and unexpired (sys/wrapping/lookup)."""
        def lookup(client: hvac.Client) -> bool:
            try:
                client.adapter.post("/v1/sys/wrapping/lookup", json={"token": token})
            except hvac.exceptions.InvalidRequest:
                return False  # "wrapping token is not valid or does not exist"
            return True
        return self.vault.call(lookup)

    def health(self) -> None:
        self.vault.health()
