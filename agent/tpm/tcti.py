"""TCTI strings such as ``swtpm:host=127.0.0.1,port=2321`` or ``device:/dev/tpmrm0``."""

from __future__ import annotations

from tpm2_pytss import TCTILdr

KNOWN = ("device", "swtpm", "mssim", "tabrmd", "libtpms", "cmd")


class TctiError(ValueError):
    pass


def parse_tcti(tcti: str) -> tuple[str, str]:
    """Split into (module, configuration); unknown modules are refused early."""
    name, _, conf = tcti.strip().partition(":")
    if name not in KNOWN:
        raise TctiError(f"unknown TCTI {name!r} in {tcti!r}; expected one of {', '.join(KNOWN)}")
    if name == "device" and not conf:
        conf = "/dev/tpmrm0"
    return name, conf


def open_tcti(tcti: str) -> TCTILdr:
    name, conf = parse_tcti(tcti)
    return TCTILdr(name, conf) if conf else TCTILdr(name)
