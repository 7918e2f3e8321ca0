"""Backing up and restoring an attestor's data directory.

What must never be lost is small: the CA keys (``ca/``), the embedded secret store's key
(``secrets.key``: without it every stored secret is unreadable), the settings, the EK trust
store, and the database (devices with their enrolled AKs, policies, the signing keyring, the
audit chain). A backup is one tar file (mode 0600) holding those files and a manifest with
the SHA-256 of each; SQLite is copied with SQLite's online backup API, so the attestor keeps
serving meanwhile. PostgreSQL is not copied here: ``pg_dump`` is the tool for it (docs/deploy.md),
and the manifest says so. A restore checks every hash before it writes anything, and refuses
a target that already holds an attestor.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from attestor.db.engine import sqlite_file
from attestor.settings import CONFIG_FILE, Settings, config_file

MANIFEST = "manifest.json"
FORMAT = 1
SECRET_FILES = ("ca/root.key", "ca/issuing.key", "secrets.key", "signing.key")


class BackupError(Exception):
    """A backup cannot be made or restored; the message says why."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    files: tuple[str, ...]
    database: str  # "sqlite" (inside the archive) or "postgresql" (use pg_dump)


def _members(settings: Settings) -> dict[str, Path]:
    """Archive name -> file on disk, for every file of the data directory that matters."""
    found: dict[str, Path] = {}
    config = config_file(settings.data_dir)  # $EDGEPROOF_CONFIG (a ConfigMap) if set
    if config.is_file():
        found[CONFIG_FILE] = config
    for base, prefix in ((settings.ca_dir, "ca"), (settings.trust_dir, "trust/ek-roots")):
        if base.is_dir():
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                found[f"{prefix}/{path.relative_to(base).as_posix()}"] = path
    for name, path in (("secrets.key", settings.secret_key_file),
                       ("signing.key", settings.signing_key_file)):
        if path.is_file():
            found[name] = path
    if "ca/root.pem" not in found:
        raise BackupError(f"{settings.data_dir} holds no attestor (no ca/root.pem)")
    return found


def _sqlite_copy(source: Path) -> bytes:
    """A consistent copy of a live SQLite database (WAL included), through the backup API."""
    if not source.is_file():
        raise BackupError(f"the database file {source} does not exist")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "copy.db"
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot copy the database {source}: {exc}") from exc
        finally:
            dst.close()
            src.close()
        return target.read_bytes()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(mtime)
    tar.addfile(info, io.BytesIO(data))


def create(settings: Settings, out: Path, now: dt.datetime) -> BackupReport:
    """Write a backup of the data directory (and a SQLite database) to ``out``."""
    if out.exists():
        raise BackupError(f"{out} exists; choose a new file name")
    contents = {name: path.read_bytes() for name, path in _members(settings).items()}
    db_path = sqlite_file(settings.db_url)
    database = "sqlite" if db_path is not None else "postgresql"
    if db_path is not None:
        contents["attestor.db"] = _sqlite_copy(db_path)
    manifest = {"format": FORMAT, "created_at": now.isoformat(), "database": database,
                "files": {n: hashlib.sha256(b).hexdigest() for n, b in sorted(contents.items())}}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        stamp = now.timestamp()
        _add(tar, MANIFEST, json.dumps(manifest, indent=1).encode(), stamp)
        for name, data in sorted(contents.items()):
            _add(tar, name, data, stamp)
        raw.flush()
        os.fsync(raw.fileno())
    return BackupReport(out, tuple(sorted(contents)), database)


def _read(archive: Path) -> tuple[dict[str, object], dict[str, bytes]]:
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            blobs: dict[str, bytes] = {}
            for member in tar.getmembers():
                if not member.isfile():
                    raise BackupError(f"{archive}: {member.name!r} is not a regular file")
                handle = tar.extractfile(member)
                if handle is None:
                    raise BackupError(f"{archive}: cannot read {member.name!r}")
                blobs[member.name] = handle.read()
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{archive} is not a readable backup: {exc}") from exc
    try:
        manifest = json.loads(blobs.pop(MANIFEST))
    except (KeyError, ValueError) as exc:
        raise BackupError(f"{archive} has no valid {MANIFEST}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive}: unknown backup format")
    return manifest, blobs


def verify(archive: Path) -> tuple[dict[str, object], dict[str, bytes]]:
    """The manifest and files of a backup whose every hash matches; else :class:`BackupError`."""
    manifest, blobs = _read(archive)
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise BackupError(f"{archive}: the manifest lists no files")
    if set(listed) != set(blobs):
        raise BackupError(f"{archive}: files and manifest differ "
                          f"({sorted(set(listed) ^ set(blobs))})")
    for name, digest in listed.items():
        if hashlib.sha256(blobs[name]).hexdigest() != digest:
            raise BackupError(f"{archive}: {name} does not match its recorded hash")
        if name.startswith("/") or ".." in Path(name).parts:
            raise BackupError(f"{archive}: unsafe member name {name!r}")
    return manifest, blobs


def restore(archive: Path, data_dir: Path) -> dict[str, object]:
    """Restore a verified backup into a new data directory; returns its manifest."""
    manifest, blobs = verify(archive)
    if (data_dir / "ca" / "root.pem").exists():
        raise BackupError(f"{data_dir} already holds an attestor; restore into a new directory")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    for name, data in sorted(blobs.items()):
        target = data_dir / name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = name in SECRET_FILES or name == "attestor.db"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return manifest
