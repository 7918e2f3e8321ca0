"""Settings of the Vault backends (``[vault]`` in ``attestor.toml``, ``EDGEPROOF_VAULT__*``).

Used when ``issuer = "vault"`` or ``secrets.backend = "vault"``. Credentials come
from files (mounted Kubernetes secrets) or the environment, never the TOML file
in a repository; validation names the missing field.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

KV_FIELDS = frozenset({"device_class", "device_id", "model", "name"})
K8S_JWT = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class VaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(pattern=r"^https?://", description="Vault's API address")
    ca_bundle: Path | None = Field(None, description="CA bundle for Vault's TLS certificate")
    namespace: str | None = Field(None, description="Vault Enterprise namespace")
    timeout_seconds: float = Field(5.0, gt=0, le=60, description="per request")
    auth: Literal["token", "approle", "kubernetes"] = Field("token", description="auth method")
    token: SecretStr | None = Field(None, description="token auth: the token")
    token_file: Path | None = Field(None, description="token auth: file holding the token")
    approle_mount: str = "approle"
    role_id: str | None = Field(None, description="AppRole role_id")
    secret_id: SecretStr | None = Field(None, description="AppRole secret_id")
    secret_id_file: Path | None = Field(None, description="file holding the AppRole secret_id")
    kubernetes_mount: str = "kubernetes"
    kubernetes_role: str | None = Field(None, description="Vault role for Kubernetes auth")
    kubernetes_jwt_file: Path = Field(K8S_JWT, description="the pod's service-account token")
    pki_mount: str = Field("pki", description="PKI secrets engine mount")
    pki_role: str = Field("edgeproof-device", description="role used with sign/<role>")
    dns_suffix: str | None = Field(None, pattern=r"^[a-z0-9.\-]+$",
                                   description="adds DNS SAN <device-id>.<suffix> when set")
    ca_chain_cache_seconds: int = Field(3600, ge=10, description="CA chain and role cache")
    kv_mount: str = Field("secret", description="KV v2 mount")
    kv_path: str = Field("edgeproof/{device_class}/{name}",
                         description="secret path; fields: device_class, device_id, model, "
                         "name")
    kv_field: str = Field("value", description="the key inside the KV secret holding the value")
    wrap_ttl_seconds: int = Field(0, ge=0, le=3600, description="response-wrap released "
                                  "secrets with this TTL (0: deliver the value)")
    device_address: str | None = Field(None, pattern=r"^https?://",
                                       description="Vault address devices unwrap at "
                                       "(default: address)")

    @field_validator("kv_path")
    @classmethod
    def _template(cls, value: str) -> str:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        if not fields <= KV_FIELDS or "{name}" not in value:
            raise ValueError(f"kv_path may use {sorted(KV_FIELDS)} and must use {{name}}")
        return value.strip("/")

    @model_validator(mode="after")
    def _credentials(self) -> VaultSettings:
        if self.auth == "token" and not (self.token or self.token_file):
            raise ValueError("vault.auth = token needs vault.token or vault.token_file")
        if self.auth == "approle" and not (self.role_id and (self.secret_id
                                                             or self.secret_id_file)):
            raise ValueError("vault.auth = approle needs vault.role_id and vault.secret_id "
                             "(or vault.secret_id_file)")
        if self.auth == "kubernetes" and not self.kubernetes_role:
            raise ValueError("vault.auth = kubernetes needs vault.kubernetes_role")
        return self
