"""A real Vault (or OpenBao) dev server for the contract suite, when a binary is on PATH.

Same set-up surface as :class:`tests.vault.double.VaultHttpDouble` (tokens limited
to path globs, AppRole, PKI role, KV v2 writes, seal and unseal), done through the
server's own API with hvac as an operator would. Kubernetes auth needs a cluster's
TokenReview API, so tests of it skip on a real server.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import asdict
from typing import Any

import hvac
import pytest

from tests.vault.double import Role


def binary() -> str | None:
    return shutil.which("vault") or shutil.which("bao")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VaultDevServer:
    def __init__(self, path: str) -> None:
        self.kind = f"real {path.rsplit('/', 1)[-1]} dev server ({path})"
        self.port = _free_port()
        self.root_token = "root-" + str(self.port)
        self.proc = subprocess.Popen(
            [path, "server", "-dev", f"-dev-root-token-id={self.root_token}",
             f"-dev-listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.unseal_key = ""
        self._sealed = False
        self._policies = 0

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VaultDevServer:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        for line in self.proc.stdout:
            found = re.search(r"Unseal Key: (\S+)", line)
            if found:
                self.unseal_key = found.group(1)
            if "Development mode should NOT be used" in line or "Root Token" in line:
                if self.unseal_key:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the Vault dev server did not start")
        self.root = hvac.Client(self.address, token=self.root_token)
        for _ in range(100):
            if self.root.sys.is_initialized():
                break
            time.sleep(0.1)
        self.root.sys.enable_secrets_engine("pki", path="pki", config={"max_lease_ttl": "87600h"})
        self.root.secrets.pki.generate_root("internal", "contract root", mount_point="pki")
        self.root.sys.enable_auth_method("approle")
        self.root.sys.enable_auth_method("kubernetes")
        return self

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def _policy(self, globs: list[str]) -> str:
        self._policies += 1
        name = f"p{self._policies}"
        rules = "\n".join(f'path "{g}" {{ capabilities = ["read", "create", "update"] }}'
                          for g in globs)
        self.root.sys.create_or_update_policy(name, rules)
        return name

    def token(self, policies: list[str], ttl: int = 0, max_ttl: int = 0,
              renewable: bool = True) -> str:
        params: dict[str, Any] = {"policies": [self._policy(policies)], "renewable": renewable}
        if ttl:
            params.update(ttl=f"{ttl}s", explicit_max_ttl=f"{max_ttl or ttl * 4}s")
        return str(self.root.auth.token.create(**params)["auth"]["client_token"])

    def revoke(self, token: str) -> None:
        self.root.auth.token.revoke(token)

    def add_approle(self, policies: list[str], ttl: int = 3600,
                    max_ttl: int = 14400) -> tuple[str, str]:
        name = f"r{self._policies + 1}"
        self.root.auth.approle.create_or_update_approle(
            name, token_policies=[self._policy(policies)], token_ttl=f"{ttl}s",
            token_max_ttl=f"{max_ttl}s")
        role_id = self.root.auth.approle.read_role_id(name)["data"]["role_id"]
        secret_id = self.root.auth.approle.generate_secret_id(name)["data"]["secret_id"]
        return str(role_id), str(secret_id)

    def add_kubernetes_role(self, role: str, jwt: str, policies: list[str],
                            ttl: int = 3600) -> None:
        pytest.skip("Kubernetes auth needs a cluster's TokenReview API")

    def add_pki_role(self, name: str, role: Role) -> None:
        params = asdict(role)
        params["max_ttl"] = f"{role.max_ttl}s"
        self.root.secrets.pki.create_or_update_role(name, extra_params=params,
                                                    mount_point="pki")

    def put_kv(self, path: str, data: dict[str, Any]) -> int:
        answer = self.root.secrets.kv.v2.create_or_update_secret(path, data, mount_point="secret")
        return int(answer["data"]["version"])

    def roots_pem(self) -> str:
        return str(self.root.secrets.pki.read_ca_certificate(mount_point="pki"))

    @property
    def sealed(self) -> bool:
        return self._sealed

    @sealed.setter
    def sealed(self, value: bool) -> None:
        if value:
            self.root.sys.seal()
        else:
            self.root.sys.submit_unseal_key(self.unseal_key)
        self._sealed = value
