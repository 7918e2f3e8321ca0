"""The throughput bench's CPU categoriser files known frames where they belong (so the
split in docs/benchmarks.md cannot silently regress to "everything in identity/ is
crypto")."""

from __future__ import annotations

import pytest

from bench import cpu_split as c

SITE = "/srv/.venv/lib/python3.11/site-packages"
ROOT = "/srv/edgeproof"
HANDLER = f"attest ({ROOT}/attestor/services/attestation.py:123)"


@pytest.mark.parametrize(("leaf", "category"), [
    (f"__ecp_nistz256_mul_montx ({SITE}/cryptography/hazmat/bindings/_rust.abi3.so)",
     c.CRYPTO),
    ("SHA256_Update (/usr/lib/x86_64-linux-gnu/libcrypto.so.3)", c.CRYPTO),
    ("EVP_hash (_hashopenssl.c:442)", c.CRYPTO),
    (f"ImaLog.replay ({ROOT}/identity/ima/replay.py:40)", c.EVENTLOG),
    (f"parse ({ROOT}/identity/eventlog/parse.py:12)", c.EVENTLOG),
    (f"verify_quote ({ROOT}/identity/tpm/quote.py:80)", c.IDENTITY),
    (f"Connection._execute_context ({SITE}/sqlalchemy/engine/base.py:1868)", c.ORM),
    (f"Session.exec ({SITE}/sqlmodel/orm/session.py:66)", c.ORM),
    (f"PQsendQueryPrepared ({SITE}/psycopg_binary/../psycopg_binary.libs/libpq-1.so.5)",
     c.DRIVER),
    (f"Cursor.execute ({SITE}/psycopg/cursor.py:113)", c.DRIVER),
    ("pysqlite_cursor_execute (/usr/lib/python3.11/lib-dynload/_sqlite3.so)", c.DRIVER),
    (f"run_sync ({SITE}/anyio/to_thread.py:56)", c.HANDOFF),
    ("Condition.notify (/usr/lib/python3.11/threading.py:380)", c.HANDOFF),
    (f"UVStream__try_write ({SITE}/uvloop/loop.cpython-311-x86_64-linux-gnu.so)", c.HANDOFF),
    (f"APIRouter.matches ({SITE}/starlette/routing.py:700)", c.FRAMEWORK),
    (f"HttpToolsProtocol.data_received ({SITE}/uvicorn/protocols/http/httptools_impl.py:1)",
     c.FRAMEWORK),
    (f"BaseModel.model_validate ({SITE}/pydantic/main.py:596)", c.PYDANTIC),
    (f"validate_python ({SITE}/pydantic_core/_pydantic_core.cpython-311.so)", c.PYDANTIC),
    ("Logger.info (/usr/lib/python3.11/logging/__init__.py:1477)", c.LOGGING),
    ("encoder_listencode_obj (_json.c:1443)", c.JSON),
    (f"unmarshal ({SITE}/tpm2_pytss/types.py:300)", c.TPM),
    (HANDLER, c.GLUE),
])
def test_each_known_leaf_is_filed_in_its_category(leaf: str, category: str) -> None:
    assert c.categorise([HANDLER, leaf]) == category


def test_a_sample_is_filed_by_its_innermost_categorised_frame() -> None:
    # malloc in libc (no category) called from libpq: the driver's CPU
    stack = [HANDLER, f"Cursor.execute ({SITE}/psycopg/cursor.py:113)",
             "PQexec (/usr/lib/libpq.so.5)", "0x7f00 (/usr/lib/libc.so.6)"]
    assert c.categorise(stack) == c.DRIVER
    # an interpreter internal under identity/ima: event log + IMA, not "other"
    assert c.categorise([HANDLER, f"replay ({ROOT}/identity/ima/replay.py:9)",
                         "PyObject_GetAttr (libpython3.11.so.1.0)"]) == c.EVENTLOG
    # identity/ calling into cryptography: crypto, not identity
    assert c.categorise([HANDLER, f"verify_quote ({ROOT}/identity/tpm/quote.py:80)",
                         f"verify ({SITE}/cryptography/hazmat/bindings/_rust.abi3.so)"]) \
        == c.CRYPTO


def test_a_stack_with_no_categorised_frame_is_other() -> None:
    assert c.categorise(["0x7f00 (libc.so.6)", f"encode ({SITE}/jwt/api_jwt.py:40)"]) \
        == c.OTHER


def test_waiting_threads_are_not_counted_as_cpu() -> None:
    folded = [
        f"{HANDLER};Connection.wait ({SITE}/psycopg/connection.py:495);poll (libc.so.6) 7",
        "Thread.run (threading.py:982);Condition.wait (threading.py:327);"
        "PyThread_acquire_lock_timed (libpython3.11.so);0x7f01 (libc.so.6) 5",
        f"{HANDLER};verify ({SITE}/cryptography/hazmat/bindings/_rust.abi3.so) 3",
    ]
    assert c.split_folded(folded) == {c.IDLE: 12, c.CRYPTO: 3}
