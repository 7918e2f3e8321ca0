"""All-or-nothing replacement of the AK and DevID: new keys beside the old, one switch.

A (re-)provisioning never touches the keys the attestor knows until it has
confirmed the new ones. The order, with what a crash at each point leaves:

1. ``provision.json`` (the journal) is written: phase ``creating``, the live
   handles and the new ones. (Crash: the journal rolls back.)
2. The new AK and DevID are created at the new handles (the configured ones when
   they are free, else each one's alternate, see :func:`alternate`), certified and
   enrolled; the attestor answers with the DevID certificate. (Crash or any error:
   roll back, the new keys are evicted; the old keys, ``agent.toml`` and
   ``devid.pem`` were never touched.)
3. The journal is rewritten, phase ``confirmed``, holding everything the switch
   writes: the certificate, the CA, the new ``agent.toml``. This is the commit
   point. (Crash from here on: roll forward.)
4. The switch: ``ca.pem`` and ``devid.pem``, then ``agent.toml`` (handles, device
   id, AK name), each written atomically.
5. The old keys are evicted, then the journal is removed.

:func:`recover` finishes whichever way the journal says; ``provision``,
``attest`` and ``run`` call it before they use the keys. One gap is left: a crash
between the attestor's answer (2) and the journal's commit (3) rolls back keys the
attestor already knows; ``edge-agent doctor`` then reports the mismatch and
``edge-agent provision --force`` recovers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import AgentConfig, config_path
from agent.files import atomic_write, fsync_dir

if TYPE_CHECKING:
    from agent.tpm.device import Tpm

JOURNAL = "provision.json"
DEVID_CERT = "devid.pem"
CA_FILE = "ca.pem"
CREATING, CONFIRMED = "creating", "confirmed"
_ALTERNATE_BIT = 0x10  # 0x81000002 <-> 0x81000012, 0x81000003 <-> 0x81000013


class KeySwapError(Exception):
    """The new keys cannot be placed (handles collide, the journal is unreadable)."""


def alternate(handle: int) -> int:
    """The other persistent handle of a key's pair: new keys go there while the old
    ones stay where they are (and the next re-provisioning goes back)."""
    return handle ^ _ALTERNATE_BIT


@dataclass
class Journal:
    phase: str
    new_ak: int
    new_devid: int
    # the keys the attestor knows until the switch; None when there were none (a first
    # provisioning puts the new keys at the configured handles)
    old_ak: int | None = None
    old_devid: int | None = None
    # set when the attestor has confirmed (phase ``confirmed``)
    device_id: str | None = None
    ak_name: str | None = None
    certificate: str | None = None
    ca: str | None = None
    config_toml: str | None = None

    @property
    def old(self) -> tuple[int, ...]:
        return tuple(h for h in (self.old_ak, self.old_devid) if h is not None)

    @property
    def new(self) -> tuple[int, int]:
        return self.new_ak, self.new_devid


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL


def read_journal(state_dir: Path) -> Journal | None:
    path = journal_path(state_dir)
    try:
        journal = Journal(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise KeySwapError(f"{path}: unreadable provisioning journal ({exc})") from exc
    if journal.phase not in (CREATING, CONFIRMED) or (
            journal.phase == CONFIRMED and journal.config_toml is None):
        raise KeySwapError(f"{path}: not a provisioning journal")
    return journal


def write_journal(state_dir: Path, journal: Journal) -> None:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(journal_path(state_dir), json.dumps(asdict(journal)).encode(), 0o600)


def remove_journal(state_dir: Path) -> None:
    journal_path(state_dir).unlink(missing_ok=True)
    fsync_dir(state_dir)


def begin(config: AgentConfig, tpm: Tpm) -> Journal:
    """Step 1: choose the new handles and record them. The configured handles when
    nothing is there (a first provisioning), else their alternates, so the old keys
    stay until the switch; an object an earlier interrupted run left at an alternate
    is evicted."""
    live = (config.ak_handle, config.devid_handle)
    if not any(tpm.has(h) for h in live):
        journal = Journal(CREATING, *live)
    else:
        journal = Journal(CREATING, alternate(live[0]), alternate(live[1]), *live)
        if {config.srk_handle, *live} & set(journal.new):
            raise KeySwapError(
                f"no free handles for the new keys: the alternates of ak_handle "
                f"0x{live[0]:08x} and devid_handle 0x{live[1]:08x} (0x{journal.new_ak:08x}, "
                f"0x{journal.new_devid:08x}) collide with a configured handle; choose "
                "handles that differ in more than bit 4 (docs/agent.md)")
    write_journal(config.state_dir, journal)
    for handle in _disposable(journal.new, journal.old):
        tpm.evict(handle)
    return journal


def confirm(config: AgentConfig, journal: Journal, *, device_id: str, ak_name: str,
            certificate: str, ca: str) -> Journal:
    """Step 3, the commit point: everything the switch writes, in the journal."""
    switched = replace(config, device_id=device_id, ak_handle=journal.new_ak,
                       devid_handle=journal.new_devid, ak_name=ak_name)
    done = replace(journal, phase=CONFIRMED, device_id=device_id, ak_name=ak_name,
                   certificate=certificate, ca=ca, config_toml=switched.render())
    write_journal(config.state_dir, done)
    return done


def finish(config: AgentConfig, tpm: Tpm, journal: Journal) -> None:
    """Steps 4 and 5 (idempotent): install the new identity, evict the old keys."""
    state = config.state_dir
    atomic_write(state / CA_FILE, (journal.ca or "").encode())
    atomic_write(state / DEVID_CERT, (journal.certificate or "").encode())
    atomic_write(config_path(state), (journal.config_toml or "").encode(), 0o600)
    config.device_id, config.ak_name = journal.device_id, journal.ak_name
    config.ak_handle, config.devid_handle = journal.new
    for handle in _disposable(journal.old, journal.new):
        tpm.evict(handle)
    remove_journal(state)


def roll_back(config: AgentConfig, tpm: Tpm, journal: Journal) -> None:
    """Undo steps 1-2: evict the new keys (never the old ones), remove the journal."""
    for handle in _disposable(journal.new, journal.old):
        tpm.evict(handle)
    remove_journal(config.state_dir)


def _disposable(handles: tuple[int, ...], keep: tuple[int, ...]) -> list[int]:
    return [h for h in handles if h not in keep]


def recover(config: AgentConfig, tpm: Tpm) -> str | None:
    """Finish or undo an interrupted provisioning; what was done, or None if nothing."""
    journal = read_journal(config.state_dir)
    if journal is None:
        return None
    if journal.phase == CONFIRMED:
        finish(config, tpm, journal)
        return (f"finished an interrupted provisioning: AK 0x{journal.new_ak:08x}, DevID "
                f"0x{journal.new_devid:08x}; the old keys were evicted")
    roll_back(config, tpm, journal)
    return ("undid an interrupted provisioning: its new keys were evicted, the enrolled "
            "keys kept")


def pending(state_dir: Path) -> str | None:
    """A one-line description of an interrupted provisioning, or None."""
    try:
        journal = read_journal(state_dir)
    except KeySwapError as exc:
        return str(exc)
    if journal is None:
        return None
    what = "confirmed by the attestor, not yet installed" if journal.phase == CONFIRMED \
        else "not confirmed by the attestor"
    return f"an interrupted provisioning ({what}) in {journal_path(state_dir)}"
