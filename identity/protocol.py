"""Values both sides of the enrollment protocol must compute identically."""

from __future__ import annotations

import hashlib

from identity.tpm.structures import object_name, parse_public


def enrollment_binding(ek_public: bytes, ak_name: bytes) -> bytes:
    """Qualifying data of the DevID certify at enrollment: binds it to this EK and AK.

    Freshness comes from credential activation (a new server secret that only
    that TPM can recover); this binding stops a certify being replayed with
    another EK/AK pair.
    """
    return hashlib.sha256(b"edgeproof/enroll/v1\x00" + ek_public + ak_name).digest()


def device_id_for(ek_public: bytes) -> str:
    """A stable device id derived from the EK's Name: re-enrolling a TPM finds its record."""
    name = object_name(parse_public(ek_public))
    return "d" + hashlib.sha256(name).hexdigest()[:31]
