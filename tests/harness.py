"""Test harness: a live attestor over real HTTP, and emulated devices on swtpm."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from agent.attest import device_signer
from agent.client import AttestorClient
from agent.config import AgentConfig
from agent.sim.boot import simulate_boot
from agent.sim.ima import measure, simulate_ima
from agent.sim.swtpm import Manufacturer, SwtpmProcess, free_port_pair
from agent.tpm.device import Tpm
from attestor.app import create_app
from attestor.auth import apikeys
from attestor.services.context import Services, build_services
from attestor.services.policies import learn_from_device
from attestor.settings import load_settings
from attestor.setup import initialise
from attestor.trust import import_certificates
from tests.leaks import LOGS, LeakWatch, Recorder


class MutableClock:
    """The attestor's clock: real time plus an offset a test can move."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


class LiveAttestor:
    def __init__(self, data_dir: Path, trusted: list[Manufacturer],
                 database_url: str | None = None, *,
                 https: bool | tuple[Path, Path] = False, **overrides: object) -> None:
        """``https``: serve TLS with a certificate from the attestor's own CA (True) or with
        the given (certificate, key) files; ``ca_bundle`` is then the attestor's root."""
        self.settings = load_settings(data_dir, dev=True, database_url=database_url,
                                      **overrides)
        initialise(self.settings, dt.datetime.now(dt.UTC))
        for maker in trusted:
            refused = import_certificates(
                [maker.root_certificate, maker.intermediate_certificate], self.settings.trust_dir
            )
            assert not refused, refused
        self.clock = MutableClock()
        self.services: Services = build_services(self.settings, clock=self.clock)
        with self.services.session() as session, session.begin():
            self.enroller_key = apikeys.create(session, "test station", "enroller", self.clock())
        self.enroller_headers = {"X-Api-Key": self.enroller_key}
        self.watch = LeakWatch(log_start=len(LOGS.lines))
        self._watch_own_keys()
        self.port = free_port_pair()
        self.ca_bundle = self.settings.ca_dir / "root.pem"
        tls = self._tls_files(data_dir, https)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        app = Recorder(create_app(self.services), self.watch)
        ssl_files = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls else {}
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                log_level="info", lifespan="on", log_config=None,
                                proxy_headers=False,
                                **ssl_files)  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def _tls_files(self, data_dir: Path, https: bool | tuple[Path, Path]
                   ) -> tuple[Path, Path] | None:
        if https is False:
            return None
        if https is not True:
            return https
        from tests.tls import server_files

        return server_files(self.services.ca, data_dir, self.clock())

    def start(self) -> LiveAttestor:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("attestor did not start")
            time.sleep(0.01)
        return self

    def _watch_own_keys(self) -> None:
        """The attestor's private keys and passphrase must never leave its data dir."""
        from cryptography.hazmat.primitives import serialization

        issuer = self.services.ca
        keys = {"the issuing CA key": issuer.issuing.key,
                "the attestor's signing key": self.services.signer.key}
        for what, key in keys.items():
            scalar = key.private_numbers().private_value
            self.watch.secret(what, scalar.to_bytes(32, "big"))
            pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode().splitlines()
            self.watch.secret(what, pem[1])
        self.watch.secret("the secret-store key", self.settings.secret_key_file.read_bytes())
        self.watch.secret("the CA passphrase", self.settings.ca_passphrase().decode())

    def leaks(self) -> list[str]:
        from attestor import audit
        from attestor.db import queries

        with self.services.session() as session:
            entries = [audit.event_json(e) for e in queries.audit_events(session)]
        return self.watch.findings(entries)

    def stop(self, *, check_leaks: bool = True) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        try:
            if check_leaks:
                found = self.leaks()
                assert not found, "secret material leaked:\n" + "\n".join(found[:20])
        finally:
            self.services.engine.dispose()

    def client(self, config: AgentConfig | None = None, tpm: Tpm | None = None,
               *, api_key: str | None = "station") -> AttestorClient:
        """A client with the test station's enroller key; with ``config`` and ``tpm``,
        also signing device requests with that device's DevID key."""
        key = self.enroller_key if api_key == "station" else api_key
        signer = device_signer(config, tpm) if config is not None and tpm is not None else None
        bundle = str(self.ca_bundle) if self.url.startswith("https") else None
        return AttestorClient(self.url, bundle, api_key=key, signer=signer)

    def headers(self, role: str) -> dict[str, str]:
        """Authorization for an operator with ``role``."""
        return {"Authorization": f"Bearer {self.token(role)}"}

    def token(self, role: str, ttl: dt.timedelta = dt.timedelta(minutes=10)) -> str:
        from attestor.auth.tokens import local_issuer, mint

        return mint(self.services.signer, local_issuer(self.settings.trust_domain), role=role,
                    subject=f"test-{role}", ttl=ttl, now=self.clock())

    def learn(self, device_id: str, grant: tuple[str, ...] = ()) -> None:
        with self.services.session() as session, session.begin():
            learn_from_device(session, device_id, "test", self.clock(), grant=grant)

    def put_secret(self, name: str, value: bytes) -> None:
        self.watch.release(value)
        self.services.secrets.put(name, value, self.clock())  # type: ignore[attr-defined]


class Device:
    """One emulated device: a manufactured swtpm, its measured boot and agent state."""

    def __init__(self, maker: Manufacturer, root: Path, serial: str = "SN-1") -> None:
        self.root = root
        self.serial = serial
        maker.manufacture(root / "tpm")
        self.process = SwtpmProcess(root / "tpm").start()
        self.tcti = self.process.tcti
        self.tpm = Tpm(self.tcti)
        self.log = root / "binary_bios_measurements"
        self.ima = root / "binary_runtime_measurements"
        simulate_boot(self.tpm, self.log)
        simulate_ima(self.tpm, self.ima)

    def config(self, attestor_url: str, **extra: Any) -> AgentConfig:
        return AgentConfig(state_dir=self.root / "state", attestor_url=attestor_url,
                           tcti=self.tcti, event_log=self.log, ima_log=self.ima,
                           serial=self.serial, **extra)

    def reboot(self, *, tamper: str | None = None, unknown_file: bool = False) -> None:
        """Power-cycle the TPM (PCRs reset, resetCount+1) and boot again."""
        self.tpm.close()
        self.process.restart()
        self.tcti = self.process.tcti  # a resource manager in front did not survive
        self.tpm = Tpm(self.tcti)
        simulate_boot(self.tpm, self.log, tamper=tamper)
        simulate_ima(self.tpm, self.ima, unknown_file=unknown_file)

    @contextmanager
    def released(self) -> Iterator[None]:
        """swtpm serves one connection at a time: let another process or command have it
        (or a resource manager: set ``tcti`` to reach the TPM through it afterwards)."""
        self.tpm.close()
        try:
            yield
        finally:
            self.tpm = Tpm(self.tcti)

    def run_program(self, path: str, contents: bytes) -> None:
        """The running system measures one more file (IMA appends, PCR10 extends)."""
        measure(self.tpm, self.ima, ((path, contents),), start=False)

    def close(self) -> None:
        self.tpm.close()
        self.process.stop()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def enroll_and_learn(attestor: LiveAttestor, device: Device) -> AgentConfig:
    """Provision ``device`` and learn its class's golden values from its current boot."""
    from agent.attest import attest_once
    from agent.client import AttestorError
    from agent.enroll import provision

    tls = {"ca_bundle": attestor.ca_bundle} if attestor.url.startswith("https") else {}
    config = device.config(attestor.url, **tls)
    with attestor.client() as client:
        provision(config, device.tpm, client, now())
        try:
            attest_once(config, device.tpm, client, now())
        except AttestorError as exc:
            assert exc.codes == ["policy.no_reference"], exc.codes
        assert config.device_id is not None
        attestor.learn(config.device_id)
    return config


def enrollment_body(tpm: Tpm, ak_tpm: Tpm | None = None) -> dict[str, object]:
    """Step one of enrollment as the agent builds it: ``tpm``'s EK, and an AK and DevID
    made in ``ak_tpm`` (another TPM, for forgeries; by default the same one)."""
    import base64

    from agent.tpm.device import DEVID_HANDLE
    from identity.protocol import enrollment_binding
    from identity.tpm.structures import object_name, parse_public

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    ak_tpm = ak_tpm or tpm
    ek = tpm.endorsement()
    tpm.ensure_srk()
    ak_tpm.ensure_srk()
    ak = ak_tpm.create_ak()
    devid = ak_tpm.create_devid()
    certify = ak_tpm.certify_persistent(
        DEVID_HANDLE, enrollment_binding(ek.public, object_name(parse_public(ak))))
    return {"ek_public": b64(ek.public), "ek_certificate": b64(ek.certificate or b""),
            "ak_public": b64(ak), "devid_public": b64(devid),
            "devid_certify": {"attest": b64(certify.attest),
                              "signature": b64(certify.signature)}}
