"""Mutual TLS with the TPM-resident workload key, in process: OpenSSL's TPM 2.0 provider
(Debian ``tpm2-openssl``) loaded into the library Python's ``ssl`` module uses.

How, and why this way (checked with OpenSSL 3.0 and tpm2-openssl 1.1.1):

- ``ssl.SSLContext.load_cert_chain`` reads ``key.pem``, a ``TSS2 PRIVATE KEY``, once the
  provider is loaded: its decoder turns the file into a key the TPM holds (loaded under
  the SRK at its persistent handle, as the agent created it).
- The provider is loaded at run time with ``OSSL_PROVIDER_load`` (ctypes, two calls)
  rather than through an ``OPENSSL_CONF`` file, which OpenSSL reads only once, at its
  first use in the process: long before a command decides it needs the TPM.
- OpenSSL 3.0 picks a signature implementation first and moves the key to it second,
  and tpm2-openssl 1.1.1 "exports" a TPM key to the default provider with its public
  half only (tpm2-openssl issue 81), so the default provider's ECDSA then fails with
  "missing private key" (Python: ``[SSL] EVP lib``). The default property query
  ``?tpm2.signature=yes`` makes OpenSSL prefer the TPM's signature implementation; every
  other algorithm (digests, ciphers, key exchange, random numbers) stays with the default
  provider. The cost: signature *verification* in this process also goes through the TPM
  (TPM2_VerifySignature), so the server's chain must use algorithms the TPM has (ECDSA
  P-256/P-384, RSA-2048: `attestor tls issue` certificates are P-256). The property is
  process-wide: only one-shot commands (``edge-agent fetch-update``) load the provider,
  never the renewal daemon.
- The provider opens its own TPM connection (``TPM2OPENSSL_TCTI``) beside the agent's,
  and uses several transient objects per handshake (the key, hash sequences, verify
  keys): it needs a resource manager, the kernel's ``/dev/tpmrm0`` or ``tpm2-abrmd``.
  A direct TCTI (``swtpm:``, ``mssim:``, ``device:/dev/tpm0``) is refused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import ssl
import tempfile
from pathlib import Path

from agent.tpm.tcti import parse_tcti

PROVIDER = "tpm2"
SIGNATURES_FROM_THE_TPM = b"?tpm2.signature=yes"

_loaded_for: str | None = None


class TpmTlsError(Exception):
    """The TPM key cannot be used for TLS here; the message says why and what to do."""


def needs_resource_manager(tcti: str) -> None:
    name, conf = parse_tcti(tcti)
    if name == "tabrmd" or (name == "device" and "tpmrm" in conf):
        return
    raise TpmTlsError(
        f"device mTLS needs a TPM resource manager, and TCTI {tcti!r} reaches the TPM "
        "directly: use device:/dev/tpmrm0, or run tpm2-abrmd and use tabrmd: "
        "(docs/agent.md, device mTLS)")


def _libcrypto() -> ctypes.CDLL:
    if ssl.OPENSSL_VERSION_INFO[0] < 3:
        raise TpmTlsError(f"Python's ssl module uses {ssl.OPENSSL_VERSION}; the TPM provider "
                          "needs OpenSSL 3")
    name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise TpmTlsError(f"cannot open {name}: {exc}") from exc
    lib.OpenSSL_version_num.restype = ctypes.c_ulong
    if lib.OpenSSL_version_num() != ssl.OPENSSL_VERSION_NUMBER:
        raise TpmTlsError(f"{name} is not the OpenSSL Python's ssl module uses "
                          f"({ssl.OPENSSL_VERSION})")
    lib.OSSL_PROVIDER_load.restype = ctypes.c_void_p
    lib.OSSL_PROVIDER_load.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.EVP_set_default_properties.restype = ctypes.c_int
    lib.EVP_set_default_properties.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


def load_provider(tcti: str) -> None:
    """Load the default and tpm2 providers into OpenSSL's default library context, the TPM
    reached at ``tcti``, TPM signatures preferred. Once per process."""
    global _loaded_for
    if _loaded_for is not None:
        if _loaded_for != tcti:
            raise TpmTlsError(f"the TPM provider is already loaded for {_loaded_for!r}")
        return
    needs_resource_manager(tcti)
    lib = _libcrypto()
    os.environ["TPM2OPENSSL_TCTI"] = tcti  # read by the provider when it initialises
    for provider in ("default", PROVIDER):  # explicit loading stops default's auto-load
        if not lib.OSSL_PROVIDER_load(None, provider.encode()):
            raise TpmTlsError(f"OpenSSL cannot load its {provider!r} provider: install "
                              "tpm2-openssl (its module is ossl-modules/tpm2.so), and check "
                              f"that the TPM answers at {tcti!r}")
    if lib.EVP_set_default_properties(None, SIGNATURES_FROM_THE_TPM) != 1:
        raise TpmTlsError("OpenSSL refused the property query that selects TPM signatures")
    _loaded_for = tcti


def client_context(cert: Path, chain: Path, key: Path, tcti: str,
                   ca_bundle: str | None) -> ssl.SSLContext:
    """A TLS client context that presents ``cert`` (with ``chain``) and proves it with the
    TPM key in ``key`` (a TSS2 PRIVATE KEY file), verifying the server against
    ``ca_bundle`` (else the system store)."""
    load_provider(tcti)
    context = ssl.create_default_context(cafile=ca_bundle)
    context.hostname_checks_common_name = False
    with tempfile.TemporaryDirectory(prefix="edge-agent-tls-") as scratch:
        full_chain = Path(scratch) / "fullchain.pem"  # load_cert_chain wants one file
        try:
            full_chain.write_bytes(cert.read_bytes() + chain.read_bytes())
            context.load_cert_chain(full_chain, key)
        except ssl.SSLError as exc:
            raise TpmTlsError(f"cannot use the TPM key {key} with {cert}: {exc.reason or exc} "
                              f"(is the TPM reachable at {tcti!r}, and is this the key the "
                              "certificate was issued for?)") from exc
        except OSError as exc:
            raise TpmTlsError(f"cannot read the credential set: {exc}") from exc
    return context
