"""The EK trust store followed while the attestor runs (attestor/trust.py): additions and
removals are seen at the next look; a change that cannot be taken keeps the last good
store, is logged and counted once, and never empties it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attestor.trust import TrustRoots, import_certificates

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def vendor_root(directory: Path, name: str) -> Path:
    """A self-signed CA certificate, as a TPM vendor publishes its EK root."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


class Counted:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


def names(roots: TrustRoots) -> list[str]:
    return sorted(c.subject.rfc4514_string() for c in roots.current().roots)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "data" / "trust" / "ek-roots"


@pytest.fixture
def vendors(tmp_path: Path) -> Path:
    (tmp_path / "vendors").mkdir()
    return tmp_path / "vendors"


def test_a_root_added_or_removed_while_running_is_seen_at_the_next_look(
        store: Path, vendors: Path) -> None:
    roots = TrustRoots(store)
    assert names(roots) == []  # no directory yet: nothing trusted
    assert import_certificates([vendor_root(vendors, "vendor-a")], store) == []
    assert names(roots) == ["CN=vendor-a"]
    assert import_certificates([vendor_root(vendors, "vendor-b")], store) == []
    assert names(roots) == ["CN=vendor-a", "CN=vendor-b"]
    (store / "vendor-a.pem").unlink()  # how trust is withdrawn
    assert names(roots) == ["CN=vendor-b"]


def test_an_unchanged_directory_is_not_read_again(store: Path, vendors: Path) -> None:
    import_certificates([vendor_root(vendors, "vendor-a")], store)
    roots = TrustRoots(store)
    assert roots.current() is roots.current()


def test_import_leaves_no_temporary_file_and_dot_files_are_ignored(
        store: Path, vendors: Path) -> None:
    import_certificates([vendor_root(vendors, "vendor-a")], store)
    assert [p.name for p in store.iterdir()] == ["vendor-a.pem"]
    (store / ".vendor-b.pem.partial").write_bytes(
        vendor_root(vendors, "vendor-b").read_bytes())  # a copy in progress
    assert names(TrustRoots(store)) == ["CN=vendor-a"]


def test_a_corrupt_new_root_is_not_trusted_and_the_rest_stays(
        store: Path, vendors: Path) -> None:
    import_certificates([vendor_root(vendors, "vendor-a")], store)
    counted = Counted()
    roots = TrustRoots(store, counted)
    assert names(roots) == ["CN=vendor-a"]
    (store / "vendor-b.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                                         b"-----END CERTIFICATE-----\n")
    assert names(roots) == ["CN=vendor-a"]
    assert [name for name, _ in roots.current().rejected] == ["vendor-b.pem"]
    assert counted.reasons == ["invalid"]  # once per change, not once per look


def test_a_root_overwritten_with_garbage_keeps_its_last_good_content(
        store: Path, vendors: Path) -> None:
    good = vendor_root(vendors, "vendor-a")
    import_certificates([good], store)
    counted = Counted()
    roots = TrustRoots(store, counted)
    assert names(roots) == ["CN=vendor-a"]
    (store / "vendor-a.pem").write_bytes(good.read_bytes()[:200])  # a truncated copy
    assert names(roots) == ["CN=vendor-a"]
    assert [name for name, _ in roots.current().rejected] == ["vendor-a.pem"]
    assert counted.reasons == ["invalid"]
    import_certificates([good], store)  # repaired
    assert names(roots) == ["CN=vendor-a"] and roots.current().rejected == ()


def test_an_unreadable_new_root_is_not_trusted(store: Path, vendors: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import_certificates([vendor_root(vendors, "vendor-a")], store)
    counted = Counted()
    roots = TrustRoots(store, counted)
    assert names(roots) == ["CN=vendor-a"]
    import_certificates([vendor_root(vendors, "vendor-b")], store)
    read_bytes = Path.read_bytes

    def denied(path: Path) -> bytes:  # the tests run as root: chmod 000 would not do
        if path.name == "vendor-b.pem":
            raise PermissionError(13, "Permission denied")
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert names(roots) == ["CN=vendor-a"]
    assert counted.reasons == ["unreadable"]


def test_a_vanished_or_unlistable_directory_keeps_the_last_good_store(
        store: Path, vendors: Path) -> None:
    import_certificates([vendor_root(vendors, "vendor-a")], store)
    counted = Counted()
    roots = TrustRoots(store, counted)
    assert names(roots) == ["CN=vendor-a"]
    aside = store.with_name("aside")
    store.rename(aside)  # a lost mount
    assert names(roots) == ["CN=vendor-a"]
    assert names(roots) == ["CN=vendor-a"]
    store.write_text("not a directory")  # listing fails with another error
    assert names(roots) == ["CN=vendor-a"]
    assert counted.reasons == ["directory", "directory"]
    store.unlink()
    aside.rename(store)
    assert names(roots) == ["CN=vendor-a"]
    (store / "vendor-a.pem").unlink()
    assert names(roots) == []  # emptied on purpose (file by file): that is followed
