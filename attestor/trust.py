"""The EK trust store on disk: ``<data-dir>/trust/ek-roots/`` holds TPM-vendor CAs.

The project ships no vendor certificates; operators import them with
``attestor trust add``. Files that fail to load are reported, not fatal.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from identity.truststore import TrustStore, load_certificates

SUFFIXES = {".pem", ".crt", ".cer", ".der"}


def load_trust_store(directory: Path) -> TrustStore:
    blobs: list[tuple[str, bytes]] = []
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix.lower() in SUFFIXES and path.is_file():
                blobs.append((path.name, path.read_bytes()))
    return TrustStore.from_blobs(blobs)


def import_certificates(files: list[Path], directory: Path) -> list[tuple[Path, str]]:
    """Copy CA certificates into the store; returns (file, problem) for those refused."""
    directory.mkdir(parents=True, exist_ok=True)
    refused: list[tuple[Path, str]] = []
    for path in files:
        try:
            load_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            refused.append((path, str(exc)))
            continue
        shutil.copyfile(path, directory / path.name)
    return refused
