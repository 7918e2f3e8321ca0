"""Vault for tests: a real dev server when a binary is on PATH, else the HTTP double."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from tests.vault.double import VaultHttpDouble
    from tests.vault.real import VaultDevServer

VaultUnderTest: TypeAlias = "VaultHttpDouble | VaultDevServer"
