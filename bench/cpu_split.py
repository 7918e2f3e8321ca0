"""Where a running attestor's CPU goes: each function's own CPU time (or each sample)
filed under one truthful category.

Profiler: yappi by default (bench/profiled_serve.py runs ``attestor serve`` under it),
py-spy with ``--profiler py-spy``. yappi was chosen because it measures CPU, not wall
time, on a shared machine: its clock is each thread's own CPU time
(``clock_type="cpu"``), so a thread that waits (for PostgreSQL, a lock, the GIL) or is
preempted by other work on the machine costs nothing, and it times C builtins
separately, named with their type (``<method 'verify' of
'cryptography...ECPublicKey' objects>``), so OpenSSL's work is crypto, not the
identity/ line that called it. Its cost: it is deterministic, so every Python call
pays the profiler's overhead (~3x the CPU here), which inflates call-heavy Python code
(ORM, framework) against C; the bench uses only the shares, scaled to the CPU per cycle
the kernel counted (``/proc/PID/stat``) in an unprofiled run. py-spy (``record
--native --gil``, attached to the server) does not slow the Python code and sees C
frames too, but a sampler counts wall time: on a machine loaded past its cores it also
counts the GIL holder while it is preempted, and preemption lands on syscall returns,
so (measured here) 40 % of its samples were ``getpid`` in asyncio's
``get_running_loop``; its check line shows the mismatch with the kernel's CPU time.

A function's own time goes to its category (the file's path, or for a builtin its
module or type); a function with none (``isinstance``, ``getpid``, contextlib, PyJWT)
is charged to its caller's category, one level up (py-spy: the innermost categorised
frame of each sample). ``crypto`` is the calls into cryptography/OpenSSL only, and
hashlib/hmac (which are OpenSSL's digests too); the Python code around them
(identity/) is in its own categories.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CRYPTO = "crypto (cryptography/OpenSSL, hashlib, hmac)"
ORM = "SQLAlchemy + SQLModel (ORM and Core)"
DRIVER = "database driver (psycopg, libpq, sqlite3)"
HANDOFF = "thread hand-offs and event loop (anyio, asyncio/uvloop, threading, futures)"
FRAMEWORK = "HTTP framework (FastAPI, Starlette, uvicorn, h11/httptools)"
PYDANTIC = "pydantic and msgspec (models, validation)"
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
    (HANDOFF, r"/anyio/|/asyncio/|/uvloop/|/_asyncio(module\.c|/)|/threading\.py"
              r"|/_thread(module\.c|/)|/concurrent/futures/|/queue\.py|/_queuemodule\.c|/selectors\.py|/socket\.py"
              r"|/sniffio/"),
    (PYDANTIC, r"/pydantic(_core|_settings)?/|/_pydantic_core|/msgspec/"),
    (EVENTLOG, r"/identity/(eventlog|ima)"),
    (TPM, r"/tpm2_pytss/|libtss2"),
    (IDENTITY, r"/identity/"),
    (LOGGING, r"/logging/|/prometheus_client/"),
    (JSON, r"/json/|/_json(\.c|/)|/orjson/|/base64\.py|/binascii"),
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


_OF_TYPE = re.compile(r"of '([\w.]+)' objects")


def yappi_path(name: str, module: str, builtin: bool) -> str:
    """A yappi function's file, or for a builtin a path made of its module or its type's
    (``<method 'verify' of 'cryptography...ECPublicKey' objects>`` ->
    ``cryptography/hazmat/.../ECPublicKey``), to categorise like a file."""
    if not builtin:
        return module
    of_type = _OF_TYPE.search(name)
    return (of_type.group(1) if of_type else name.split(" ", 1)[0]).replace(".", "/")


def split_yappi(rows: list[dict[str, Any]]) -> Counter[str]:
    """CPU seconds per category from bench/profiled_serve.py's dump: a function's own
    time goes to its category; a function with none (``isinstance``, ``getpid``,
    contextlib) is charged, call edge by call edge, to its caller's category (one level
    up; ``other`` if that has none either)."""
    category = {r["name"]: file_category(yappi_path(r["name"], r["module"], r["builtin"]))
                for r in rows}
    totals: Counter[str] = Counter()
    charged: Counter[str] = Counter()
    for row in rows:
        own = category[row["name"]]
        if own is not None:
            totals[own] += row["tsub"]
        for child, tsub in row["children"]:
            if category.get(child, OTHER) is None:
                totals[own or OTHER] += tsub
                charged[child] += tsub
    for row in rows:  # uncategorised time no call edge accounted for (roots, recursion)
        if category[row["name"]] is None:
            totals[OTHER] += max(0.0, row["tsub"] - charged[row["name"]])
    return totals


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


def table(samples: Counter[str], cpu_ms_per_cycle: float, unit: str = "samples") -> list[str]:
    """Markdown rows: category, ms per cycle (the share of the measured CPU), share of
    the running samples (idle ones are left out) or of the profiled CPU seconds."""
    total = sum(n for name, n in samples.items() if name != IDLE) or 1
    rows = ["| where (own CPU by category) | ms per cycle | share |", "|---|---:|---:|"]
    for name in CATEGORIES:
        share = samples.get(name, 0) / total
        rows.append(f"| {name} | {share * cpu_ms_per_cycle:.2f} | {share:.0%} |")
    counted = (f"{total} running samples; {samples.get(IDLE, 0)} idle left out"
               if unit == "samples" else f"{total:.1f} profiled CPU seconds")
    rows.append(f"| attestor process CPU per cycle ({counted}) | {cpu_ms_per_cycle:.2f} "
                "| 100% |")
    return rows
