"""The EK trust store on disk: ``<data-dir>/trust/ek-roots/`` holds TPM-vendor CAs.

The project ships no vendor certificates; operators import them with
``attestor trust add`` (or, under Kubernetes, a ConfigMap mounted there).

A running attestor follows the directory without a restart: :class:`TrustRoots`
looks at it each time an enrollment needs the store (one ``scandir`` and a
``stat`` per file: about 40 us for 5 files, 0.4 ms for 50 on a busy test machine,
against the milliseconds of the enrollment's own cryptography and database
work; attestation, the hot path, never reads the store) and re-reads only the
files whose stamp (device, inode, size, mtime, ctime) changed.

Why files and a stat rather than a database generation row: the directory is
the one source of truth that ``attestor trust add``, the Helm chart's ConfigMap
(which kubelet swaps atomically in every pod), backups and ``attestor ekcert
check --trust`` already share; a database row would be a second copy to keep in
step. Replicas on one host share the data directory; replicas on several hosts
share it the way they share the CA files (a ConfigMap or a shared volume), so
each sees the same change.

A reload never widens trust by accident and never empties the store by
accident: a file whose new content cannot be read or parsed keeps what it held
before (a new file holds nothing: fail closed for it alone), and a directory
that cannot be listed, or that vanished after a store was loaded from it, keeps
the whole last good store. Each such failure is logged and counted once per
change (``edgeproof_trust_store_load_failures_total``). Removing a file is how
trust is withdrawn, and that takes effect at the next enrollment. Names starting
with a dot (temporary files) are ignored.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from identity.truststore import TrustStore, load_certificates

SUFFIXES = {".pem", ".crt", ".cer", ".der"}
log = structlog.get_logger("attestor.trust")

Stamp = tuple[int, int, int, int, int]
FailureHook = Callable[[str], None]  # called with the reason: unreadable, invalid, directory


@dataclass(frozen=True)
class _File:
    stamp: Stamp
    good: bytes | None  # the last content that loaded (None: it never did)
    problem: str | None = None  # why the current content is not loaded


def _scan(directory: Path) -> dict[str, Stamp]:
    """The store's files and their stamps; OSError if the directory cannot be listed."""
    stamps: dict[str, Stamp] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name[0] == "." or os.path.splitext(entry.name)[1].lower() not in SUFFIXES:
                continue
            try:
                st = entry.stat()  # follows symlinks (a ConfigMap's files are symlinks)
            except FileNotFoundError:
                continue  # removed while listing: the next look sees the outcome
            if stat.S_ISREG(st.st_mode):
                stamps[entry.name] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                      st.st_ctime_ns)
    return stamps


def _problem(name: str, data: bytes) -> str | None:
    rejected = TrustStore.from_blobs([(name, data)]).rejected
    return rejected[0][1] if rejected else None


class TrustRoots:
    """The trust store as its directory holds it now (see the module docstring)."""

    def __init__(self, directory: Path, on_failure: FailureHook | None = None) -> None:
        self.directory = directory
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}
        self._stamps: dict[str, Stamp] | None = None  # None: never listed
        self._loaded = False
        self._store = TrustStore((), ())
        self._directory_problem: str | None = None

    def current(self) -> TrustStore:
        """The store, re-read first if any of its files changed."""
        with self._lock:
            try:
                stamps = _scan(self.directory)
            except FileNotFoundError:
                if self._files:  # it held roots: a lost mount, not a decision
                    self._directory_failed("the directory is gone")
                return self._store  # never created: nothing is trusted
            except OSError as exc:
                self._directory_failed(f"cannot list it: {exc.strerror or exc}")
                return self._store
            if self._directory_problem is not None:
                log.info("trust store directory readable again", directory=str(self.directory))
                self._directory_problem = None
            if stamps != self._stamps:
                self._reload(stamps)
            return self._store

    def _failed(self, reason: str, event: str, **fields: object) -> None:
        log.warning(event, directory=str(self.directory), **fields)
        if self._on_failure is not None:
            self._on_failure(reason)

    def _directory_failed(self, problem: str) -> None:
        if problem != self._directory_problem:  # once per change, not once per enrollment
            self._directory_problem = problem
            self._failed("directory", "trust store not reloaded: keeping the last good one",
                         problem=problem, roots=len(self._store.roots))

    def _reload(self, stamps: dict[str, Stamp]) -> None:
        files: dict[str, _File] = {}
        for name, stamp in sorted(stamps.items()):
            old = self._files.get(name)
            if old is not None and old.stamp == stamp:
                files[name] = old
                continue
            reason = "invalid"
            try:
                data = (self.directory / name).read_bytes()
            except FileNotFoundError:
                continue  # removed since the listing; the next look sees the outcome
            except OSError as exc:
                problem: str | None = f"cannot read it: {exc.strerror or exc}"
                reason = "unreadable"
            else:
                problem = _problem(name, data)
            if problem is None:
                files[name] = _File(stamp, data)
                continue
            kept = old.good if old is not None else None
            files[name] = _File(stamp, kept, problem)
            self._failed(reason, "trust store file not loaded", file=name, problem=problem,
                         kept="its previous content" if kept else "nothing (not trusted)")
        store = TrustStore.from_blobs((n, f.good) for n, f in files.items() if f.good)
        store = replace(store, rejected=tuple((n, f.problem) for n, f in files.items()
                                              if f.problem))
        if self._loaded:
            log.info("trust store reloaded", directory=str(self.directory),
                     roots=len(store.roots), intermediates=len(store.intermediates))
            if not store.roots and self._store.roots:
                log.warning("the trust store now holds no root: every EK certificate "
                            "will be refused", directory=str(self.directory))
        self._files, self._stamps, self._store = files, stamps, store
        self._loaded = True


def load_trust_store(directory: Path) -> TrustStore:
    """The store as the directory holds it now (one-shot: the CLI's view)."""
    return TrustRoots(directory).current()


def import_certificates(files: list[Path], directory: Path) -> list[tuple[Path, str]]:
    """Copy CA certificates into the store; returns (file, problem) for those refused."""
    refused: list[tuple[Path, str]] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            refused.append((path, str(exc)))
            continue
        try:
            store_certificates(directory, path.name, data)  # an OSError: the store's
        except ValueError as exc:
            refused.append((path, str(exc)))
    return refused


def store_certificates(directory: Path, name: str, data: bytes) -> None:
    """One file of CA certificates (PEM or DER) into the store as ``name``; ValueError if
    it holds none. Written whole under a temporary dot-name and renamed into place, so
    a running attestor never reads half of one."""
    load_certificates(data)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), 0o644)  # public certificates
            os.fsync(out.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
