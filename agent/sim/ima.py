"""IMA simulator: a Linux IMA measurement list (ima-ng, binary format) extended into the
emulated TPM's PCR10, as the kernel does after the boot the boot simulator measured."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from agent.files import atomic_write
from agent.tpm.device import Tpm
from identity.ima.log import IMA_NAME_PADDED, LIST_FILE, list_file_for
from identity.pcr import PcrSelection

FILES = (
    ("/usr/sbin/init", b"edgeproof simulated init 252"),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", b"edgeproof simulated glibc 2.36"),
    ("/usr/bin/edge-workload", b"edgeproof simulated workload 1.0"),
    ("/etc/edgeproof/workload.toml", b"[workload]\nname = 'demo'\n"),
)
UNKNOWN_FILE = ("/var/cache/.x/miner", b"something nobody allowed")


def _field(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def template_data(path: str, digest_alg: str, digest: bytes) -> bytes:
    """ima-ng template data: d-ng (``alg:\\0digest``) and n-ng (NUL-terminated path)."""
    return _field(digest_alg.encode() + b":\x00" + digest) + _field(path.encode() + b"\x00")


def binary_entry(data: bytes, template: str = "ima-ng", pcr: int = 10,
                 bank: str = "sha1") -> bytes:
    """One entry of binary_runtime_measurements (SHA-1 template hash) or of the per-bank
    list ``binary_runtime_measurements_<bank>`` (the template data hashed in ``bank``,
    that bank's size: ima_fs.c ``ima_measurements_show``). For the 'ima' template,
    ``data`` is what the list holds (digest, name length, name)."""
    name = template.encode()
    hashed = data if template != "ima" else \
        data[:20] + data[24:].ljust(IMA_NAME_PADDED, b"\x00")
    template_hash = hashlib.new(bank.replace("sm3_256", "sm3"), hashed).digest()
    if template == "ima":
        return struct.pack("<I", pcr) + template_hash + struct.pack("<I", len(name)) + name + data
    return (struct.pack("<I", pcr) + template_hash + struct.pack("<I", len(name)) + name
            + struct.pack("<I", len(data)) + data)


def boot_aggregate(tpm: Tpm, bank: str = "sha256") -> bytes:
    """H(PCR0..9), as kernels 5.8+ compute it for non-SHA-1 banks."""
    values = tpm.pcr_read(PcrSelection.of({bank: range(10)}))[bank]
    return hashlib.new(bank, b"".join(values[i] for i in range(10))).digest()


def measure(tpm: Tpm, log_path: Path, files: tuple[tuple[str, bytes], ...],
            *, start: bool) -> bytes:
    """Measure ``files`` into PCR10 and the list; ``start`` begins a new list (a boot).

    A list named ``binary_runtime_measurements`` gets, as on kernels with per-bank
    lists, a ``binary_runtime_measurements_<bank>`` beside it for each active bank."""
    banks = tpm.active_banks()
    datas = []
    if start:
        datas.append(template_data("boot_aggregate", "sha256", boot_aggregate(tpm)))
    for path, contents in files:
        datas.append(template_data(path, "sha256", hashlib.sha256(contents).digest()))
    for data in datas:
        tpm.pcr_extend(10, {bank: hashlib.new(bank, data).digest() for bank in banks})
    lists = [(log_path, "sha1")]
    if log_path.name == LIST_FILE:
        lists += [(log_path.with_name(list_file_for(bank)), bank) for bank in banks]
    for target, bank in lists:
        entries = b"".join(binary_entry(data, bank=bank) for data in datas)
        previous = b"" if start or not target.exists() else target.read_bytes()
        atomic_write(target, previous + entries)
    return b"".join(binary_entry(data) for data in datas)


def simulate_ima(tpm: Tpm, log_path: Path, *, unknown_file: bool = False) -> bytes:
    """A fresh list after boot: boot_aggregate and the usual files (plus an unknown one)."""
    files = FILES + ((UNKNOWN_FILE,) if unknown_file else ())
    return measure(tpm, log_path, files, start=True)
