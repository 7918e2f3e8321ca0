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


def _row(name: str, module: str, tsub: float, *, builtin: bool = False,
         children: tuple[tuple[str, float], ...] = ()) -> dict[str, object]:
    return {"name": name, "module": module, "builtin": builtin, "tsub": tsub,
            "children": [list(c) for c in children]}


@pytest.mark.parametrize(("name", "module", "category"), [
    ("builtins.<method 'verify' of 'cryptography.hazmat.bindings._rust.openssl.ec."
     "ECPublicKey' objects>", "builtins", c.CRYPTO),
    ("_hashlib.openssl_sha256", "_hashlib", c.CRYPTO),
    ("builtins.<method 'validate_python' of 'pydantic_core._pydantic_core."
     "SchemaValidator' objects>", "builtins", c.PYDANTIC),
    ("psycopg_binary._psycopg.Transformer.load_rows", "psycopg_binary._psycopg", c.DRIVER),
    ("_asyncio.get_running_loop", "_asyncio", c.HANDOFF),
    ("builtins.<method 'acquire' of '_thread.lock' objects>", "builtins", c.HANDOFF),
    ("_json.encode_basestring_ascii", "_json", c.JSON),
])
def test_builtins_are_filed_by_their_module_or_type(name: str, module: str,
                                                    category: str) -> None:
    assert c.file_category(c.yappi_path(name, module, builtin=True)) == category


def test_a_yappi_profile_charges_uncategorised_callees_to_their_caller() -> None:
    ima = f"{ROOT}/identity/ima/replay.py"
    verify = ("builtins.<method 'verify' of 'cryptography.hazmat.bindings._rust.openssl.ec."
              "ECPublicKey' objects>")
    rows = [
        _row(f"{ima}:9 replay", ima, 1.0, children=(("builtins.isinstance", 0.25),)),
        _row(f"{ROOT}/identity/tpm/quote.py:80 verify_quote", f"{ROOT}/identity/tpm/quote.py",
             0.5, children=((verify, 2.0), ("builtins.isinstance", 0.5))),
        _row(verify, "builtins", 2.0, builtin=True),
        _row("builtins.isinstance", "builtins", 1.0, builtin=True),  # 0.25 from no edge
        _row(f"{SITE}/sqlalchemy/orm/session.py:1 execute", f"{SITE}/sqlalchemy/orm/session.py",
             3.0),
    ]
    split = c.split_yappi(rows)
    assert split == {c.EVENTLOG: 1.25, c.IDENTITY: 1.0, c.CRYPTO: 2.0, c.ORM: 3.0,
                     c.OTHER: 0.25}
