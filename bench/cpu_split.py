"""Where a running attestor's CPU goes: py-spy samples of the server process, each
filed under one truthful category.

Profiler: py-spy (``record --native --gil --format raw``), attached to the real
``attestor serve`` process under load. Chosen over cProfile/yappi in-process because
(1) it sees the whole server (uvicorn, the event loop, the thread pool), not only the
service functions; (2) with ``--native`` the stacks go down into C and Rust, so the
time spent *inside* OpenSSL (cryptography's ``_rust.abi3.so``, ``libcrypto``),
``libpq``, ``_json.c`` or pydantic-core is seen as such instead of being charged to the
Python line that called it; (3) it counts CPU, not wall time: ``--gil`` keeps only the
thread holding the GIL at each sample (a process of Python threads runs one at a time;
C code that releases the GIL, such as libpq's socket calls, is under-counted by that),
and samples whose innermost named frame is a wait (:func:`idle`: a lock, a condition,
``poll``) are dropped, since py-spy's own idle filter does not apply with ``--native``.
The bench checks the result: running samples / rate against the CPU time the kernel
counted for the process meanwhile (within a few per cent in the runs of
docs/benchmarks.md); (4) it does not change the code it measures (cProfile multiplies
the cost of every Python call and so inflates the frameworks). Sampling is statistical:
a category's share carries about ±sqrt(n)/N of noise, and the shares are scaled to the
CPU time the kernel accounted to the process (``/proc/PID/stat``) in an unprofiled run.
A syscall (``send``, ``write``, ``getpid``, ``sem_post``) is in the category of the
frame that made it: the kernel's work for the event loop is the event loop's.

Each sample is filed under the category of its *innermost* frame that belongs to one:
the leaf if it does (``__ecp_nistz256_mul_montx (cryptography/.../_rust.abi3.so)`` is
crypto), else the next frame out (a ``malloc`` in libc called from libpq is the
driver's; a CPython internal called from SQLAlchemy is the ORM's). ``crypto`` is the
calls into cryptography/OpenSSL only, and hashlib/hmac (which are OpenSSL's digests
too); the Python code around them (identity/) is in its own categories, and a library
with no category of its own (PyJWT, typer) goes to the category of its caller.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

CRYPTO = "crypto (cryptography/OpenSSL, hashlib, hmac)"
ORM = "SQLAlchemy + SQLModel (ORM and Core)"
DRIVER = "database driver (psycopg, libpq, sqlite3)"
HANDOFF = "thread hand-offs and event loop (anyio, asyncio/uvloop, threading, futures)"
FRAMEWORK = "HTTP framework (FastAPI, Starlette, uvicorn, h11/httptools)"
PYDANTIC = "pydantic (and pydantic-core)"
EVENTLOG = "event log + IMA (identity/eventlog, identity/ima)"
TPM = "TPM structures (tpm2-pytss, libtss2)"
IDENTITY = "other identity/ (quote, policy, X.509 and token glue)"
GLUE = "own attestor glue (attestor/)"
LOGGING = "logging and metrics (logging, prometheus_client)"
JSON = "JSON and base64 (json, _json, base64, binascii)"
OTHER = "other (interpreter, stdlib, no categorised frame)"
IDLE = "(idle: not on a CPU)"

# The innermost named frame of a thread that is waiting, not running: a lock or
# condition (and the GIL, which CPython waits for in pthread_cond_timedwait), poll and
# epoll (libpq waiting for the server, the event loop waiting for sockets), sleeps.
_IDLE_FUNCTIONS = frozenset((
    "pthread_cond_timedwait", "pthread_cond_wait", "pthread_cond_clockwait",
    "PyThread_acquire_lock_timed", "take_gil", "sem_wait", "sem_timedwait",
    "sem_clockwait", "__futex_abstimed_wait_common", "futex_wait", "poll", "ppoll",
    "epoll_wait", "epoll_pwait", "select", "pselect", "nanosleep", "clock_nanosleep",
    "uv__io_poll", "accept", "accept4"))

# Checked in this order against "/" + the frame's file; the first that matches wins.
# Order matters only where paths nest (identity/eventlog before identity/). cffi's
# backend is in none: its callers (tpm2-pytss) say what the call was for.
_PATTERNS: tuple[tuple[str, str], ...] = (
    (CRYPTO, r"/cryptography/|libcrypto\.|libssl\.|/_?hashlib|_hashopenssl\.c"
             r"|/hmac\.py|/_?sha\d*(module)?\.c|/_blake2|/_ssl\.c"),
    (ORM, r"/sqlalchemy/|/sqlmodel/"),
    (DRIVER, r"/psycopg(_binary|_c|_pool)?/|libpq\.|/sqlite3/|/_sqlite3|libsqlite3|/_sqlite/"),
    (FRAMEWORK, r"/fastapi/|/starlette/|/uvicorn/|/h11/|/httptools/|/python_multipart/"),
    (HANDOFF, r"/anyio/|/asyncio/|/uvloop/|/_asynciomodule\.c|/threading\.py|/_threadmodule\.c"
              r"|/concurrent/futures/|/queue\.py|/_queuemodule\.c|/selectors\.py|/socket\.py"
              r"|/sniffio/"),
    (PYDANTIC, r"/pydantic(_core|_settings)?/|/_pydantic_core"),
    (EVENTLOG, r"/identity/(eventlog|ima)"),
    (TPM, r"/tpm2_pytss/|libtss2"),
    (IDENTITY, r"/identity/"),
    (LOGGING, r"/logging/|/prometheus_client/"),
    (JSON, r"/json/|/_json\.c|/orjson/|/base64\.py|/binascii\.c|/binascii"),
    (GLUE, r"/attestor/"),
)
RULES = tuple((name, re.compile(pattern)) for name, pattern in _PATTERNS)
CATEGORIES: tuple[str, ...] = (*(name for name, _ in RULES), OTHER)
_FILE = re.compile(r"\(([^()]*)\)\s*$")


def file_category(path: str) -> str | None:
    """The category of one frame's file (as py-spy prints it), or None if it has none
    (the interpreter, libc, an anonymous address)."""
    path = "/" + path.split(":", 1)[0].lstrip("/")
    return next((name for name, pattern in RULES if pattern.search(path)), None)


def idle(frames: list[str]) -> bool:
    """Whether a sample is of a waiting thread: its innermost frame with a name (libc's
    are often bare addresses) is one of the waits in ``_IDLE_FUNCTIONS``."""
    for frame in reversed(frames):
        function = frame.split(" (", 1)[0].strip()
        if function and not function.startswith("0x"):
            return function in _IDLE_FUNCTIONS
    return False


def categorise(frames: Iterable[str]) -> str:
    """The category of one sample: its innermost categorised frame. ``frames`` are
    py-spy's ``function (file:line)``, outermost first."""
    for frame in reversed(list(frames)):
        found = _FILE.search(frame)
        category = file_category(found.group(1)) if found else None
        if category is not None:
            return category
    return OTHER


def split_folded(lines: Iterable[str]) -> Counter[str]:
    """Samples per category from py-spy's raw (folded) output: ``f1;f2;...;fn count``."""
    totals: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            frames = stack.split(";")
            totals[IDLE if idle(frames) else categorise(frames)] += int(count)
    return totals


def record(pid: int, seconds: float, out: Path, rate: int = 100) -> Counter[str]:
    """Sample process ``pid`` for ``seconds`` with py-spy; samples per category.
    Needs ptrace rights on ``pid`` (same user, and root or ``ptrace_scope`` 0 for a
    process that is not py-spy's child)."""
    spy = Path(sys.executable).parent / "py-spy"
    done = subprocess.run(  # noqa: S603 - our own venv's py-spy, fixed arguments
        [str(spy), "record", "--pid", str(pid), "--native", "--format", "raw",
         "--full-filenames", "--gil",
         "--rate", str(rate), "--duration", str(max(1, round(seconds))), "-o", str(out)],
        capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed: {done.stderr.strip()[-400:]}")
    return split_folded(out.read_text().splitlines())


def table(samples: Counter[str], cpu_ms_per_cycle: float) -> list[str]:
    """Markdown rows: category, ms per cycle (the share of the measured CPU), share of
    the running samples (idle ones are left out)."""
    total = sum(n for name, n in samples.items() if name != IDLE) or 1
    rows = ["| where (innermost categorised frame) | ms per cycle | share |", "|---|---:|---:|"]
    for name in CATEGORIES:
        share = samples.get(name, 0) / total
        rows.append(f"| {name} | {share * cpu_ms_per_cycle:.2f} | {share:.0%} |")
    rows.append(f"| attestor process CPU per cycle ({total} running samples; "
                f"{samples.get(IDLE, 0)} idle left out) | {cpu_ms_per_cycle:.2f} | 100% |")
    return rows
