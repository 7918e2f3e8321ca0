"""Crash-safe credential files."""

from __future__ import annotations

import os
from pathlib import Path

from agent.files import atomic_write, install_set


def test_atomic_write_sets_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    atomic_write(path, b"one", 0o600)
    atomic_write(path, b"two", 0o600)
    assert path.read_bytes() == b"two" and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_sets_swap_as_a_whole(tmp_path: Path) -> None:
    install_set(tmp_path, "s1", {"cert.pem": (b"c1", 0o644), "key.pem": (b"k1", 0o600),
                                 "secrets/a": (b"a1", 0o600)})
    assert (tmp_path / "cert.pem").read_bytes() == b"c1"
    install_set(tmp_path, "s2", {"cert.pem": (b"c2", 0o644), "key.pem": (b"k2", 0o600),
                                 "secrets/a": (b"a2", 0o600)})
    assert [(tmp_path / f).read_bytes() for f in ("cert.pem", "key.pem", "secrets/a")] == [
        b"c2", b"k2", b"a2"]
    assert os.readlink(tmp_path / "current") == "credentials/s2"
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600


def test_old_sets_are_pruned_but_the_previous_one_kept(tmp_path: Path) -> None:
    for i in range(5):
        install_set(tmp_path, f"s{i}", {"cert.pem": (b"c", 0o644)})
        os.utime(tmp_path / "credentials" / f"s{i}", (i, i))
    names = sorted(p.name for p in (tmp_path / "credentials").iterdir())
    assert "s4" in names and len(names) <= 3


def test_interrupted_staging_never_becomes_current(tmp_path: Path) -> None:
    install_set(tmp_path, "good", {"cert.pem": (b"good", 0o644)})
    staging = tmp_path / "credentials" / ".bad.staging"
    staging.mkdir()
    (staging / "cert.pem").write_bytes(b"half")
    assert (tmp_path / "cert.pem").read_bytes() == b"good"
    install_set(tmp_path, "bad", {"cert.pem": (b"complete", 0o644)})
    assert (tmp_path / "cert.pem").read_bytes() == b"complete"


def _credential_sets(root: Path, count: int) -> tuple[bytes, list[dict[str, tuple[bytes, int]]]]:
    """A CA and ``count`` complete sets (certificate, chain, key, a secret) it issued."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kill-loop CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    sets = []
    for index in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"set {index}")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(100 + index)
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
        sets.append({
            "cert.pem": (cert.public_bytes(serialization.Encoding.PEM), 0o644),
            "chain.pem": (ca_pem, 0o644),
            "key.pem": (key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), 0o600),
            "secrets/wifi/psk": (f"secret {index}".encode() * 200, 0o600),
        })
    return ca_pem, sets


CHILD = """
import pickle, sys
from pathlib import Path
from agent.files import install_set
out, sets = Path(sys.argv[1]), pickle.loads(Path(sys.argv[2]).read_bytes())
i = 0
while True:
    install_set(out, f"{sys.argv[3]}-{i}", sets[i % len(sets)])
    if i == 0:  # one whole install done: now the kill may land anywhere in the next ones
        print("installed", flush=True)
    i += 1
"""


def test_kill_9_at_any_moment_leaves_a_complete_verifying_set(tmp_path: Path) -> None:
    """A writer killed with SIGKILL at random moments, 40 times: the live set is always
    whole (every file complete, key matching certificate, chaining to the CA)."""
    import pickle
    import random
    import signal
    import subprocess
    import sys
    import time

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    out = tmp_path / "out"
    ca_pem, sets = _credential_sets(tmp_path, 3)
    blob = tmp_path / "sets.pickle"
    blob.write_bytes(pickle.dumps(sets))
    install_set(out, "initial", sets[0])
    ca = x509.load_pem_x509_certificate(ca_pem)
    rng = random.Random(11)
    live = set()
    for round_ in range(40):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(blob),  # noqa: S603
                                  str(round_)], cwd=Path(__file__).resolve().parents[2],
                                 stdout=subprocess.PIPE)
        # Wait for the child's first install (its start-up time varies with the machine's
        # load), then kill it at a random moment of the installs that follow.
        assert child.stdout is not None and child.stdout.readline() == b"installed\n"
        time.sleep(rng.uniform(0.0, 0.05))
        child.send_signal(signal.SIGKILL)
        child.wait()
        files = {rel: (out / rel).read_bytes() for rel in sets[0]}
        match = [s for s in sets if s["cert.pem"][0] == files["cert.pem"]]
        assert len(match) == 1, f"round {round_}: cert.pem is not one of the sets"
        assert files == {rel: data for rel, (data, _) in match[0].items()}, round_
        cert = x509.load_pem_x509_certificate(files["cert.pem"])
        key = serialization.load_pem_private_key(files["key.pem"], None)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        assert (cert.public_key().public_bytes(serialization.Encoding.DER, spki)
                == key.public_key().public_bytes(serialization.Encoding.DER, spki))
        cert.verify_directly_issued_by(ca)
        assert (out / "key.pem").stat().st_mode & 0o777 == 0o600
        live.add(os.readlink(out / "current").split("/")[-1].split("-")[0])
    assert len(live) >= 30, "the writer rarely got to install: the kills prove little"
    leftovers = list((out / "credentials").iterdir())
    assert len(leftovers) <= 4, leftovers  # two kept, plus at most one interrupted install
