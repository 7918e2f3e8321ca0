"""Invalid settings, explained: one message per bad setting, named as the operator wrote it
(``EDGEPROOF_ISSUANCE__CERT_TTL_SECONDS`` from the environment, ``[issuance]
cert_ttl_seconds`` in the file, or a command-line option), with the value (never a
secret's) and what is allowed."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

ENV_PREFIX = "EDGEPROOF_"
SECRET_WORDS = ("token", "password", "passphrase", "secret")  # and "key", "*_key"
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")
Loc = tuple[int | str, ...]


def _environment() -> dict[str, str]:
    """EDGEPROOF_* variables by upper-cased name (pydantic-settings ignores case)."""
    return {k.upper(): k for k in os.environ if k.upper().startswith(ENV_PREFIX)}


def _file_value(document: Mapping[str, Any], loc: Loc) -> bool:
    node: Any = document
    for part in loc:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return False
        elif not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _file_name(loc: Loc) -> str:
    """``[issuance] cert_ttl_seconds``, ``[[webhooks]] #1 url`` or ``port``."""
    keys = [str(p) for p in loc if not isinstance(p, int)]
    if len(loc) >= 2 and isinstance(loc[1], int):
        return f"[[{loc[0]}]] #{loc[1] + 1} " + ".".join(keys[1:])
    if len(keys) > 1:
        return f"[{'.'.join(keys[:-1])}] {keys[-1]}"
    return keys[0] if keys else "the settings"


def _env_name(loc: Loc, env: Mapping[str, str]) -> str | None:
    """The variable that set this value: the full path, or a section given as JSON."""
    for depth in range(len(loc), 0, -1):
        if isinstance(loc[depth - 1], int):
            continue
        parts = [str(p).upper() for p in loc[:depth] if not isinstance(p, int)]
        name = ENV_PREFIX + "__".join(parts)
        if name in env:
            rest = loc[depth:]
            shown = env[name]
            if rest:
                shown += "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)
            return shown
    return None


def _section_sources(loc: Loc, env: Mapping[str, str], document: Mapping[str, Any],
                     path: Path | None) -> str:
    """Where a whole section came from (a check across its keys failed)."""
    prefix = ENV_PREFIX + "__".join(str(p).upper() for p in loc if not isinstance(p, int))
    found = sorted(env[k] for k in env if k == prefix or k.startswith(prefix + "__"))
    where = [f"environment {', '.join(found)}"] if found else []
    if path is not None and _file_value(document, loc):
        where.append(f"file {path}")
    return " and ".join(where) or "defaults"


def _field(model: type[BaseModel], loc: Loc) -> FieldInfo | None:
    info: FieldInfo | None = None
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None or part not in current.model_fields:
            return None
        info = current.model_fields[part]
        current = _model_in(info.annotation)
    return info


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model inside ``X``, ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _is_secret(loc: Loc, info: FieldInfo | None) -> bool:
    name = str(next((p for p in reversed(loc) if not isinstance(p, int)), "")).lower()
    if any(word in name for word in SECRET_WORDS) or name == "key" or name.endswith("_key"):
        return True
    return info is not None and SecretStr in (info.annotation,
                                              *typing.get_args(info.annotation))


def _value(loc: Loc, info: FieldInfo | None, value: object) -> str:
    if _is_secret(loc, info):
        return "<redacted>"
    if isinstance(value, Mapping | list):
        return ""
    return repr(_URL_PASSWORD.sub(r"\1***@", value) if isinstance(value, str) else value)


_KINDS: dict[object, str] = {int: "an integer", float: "a number", bool: "true or false"}


def _allowed(info: FieldInfo | None) -> str:
    """What the field accepts: its choices, or its kind and bounds."""
    if info is None:
        return ""
    annotation: object = info.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]  # X | None
    if typing.get_origin(annotation) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(annotation))
    bounds = {name: getattr(m, name) for m in info.metadata
              for name in ("ge", "gt", "le", "lt") if getattr(m, name, None) is not None}
    kind = _KINDS.get(annotation, "")
    if "ge" in bounds and "le" in bounds:
        return f"{kind or 'a value'} from {bounds['ge']} to {bounds['le']}"
    limits = [f"at least {bounds['ge']}" if "ge" in bounds else "",
              f"more than {bounds['gt']}" if "gt" in bounds else "",
              f"at most {bounds['le']}" if "le" in bounds else "",
              f"less than {bounds['lt']}" if "lt" in bounds else ""]
    shown = " and ".join(limit for limit in limits if limit)
    return f"{kind or 'a value'} of {shown}" if shown else kind


def _why(error: Mapping[str, Any], model: type[BaseModel], loc: Loc) -> str:
    kind, msg = error.get("type", ""), str(error.get("msg", ""))
    if kind == "extra_forbidden":
        parent = _field(model, loc[:-1]) if len(loc) > 1 else None
        section = _model_in(parent.annotation) if parent is not None else model
        known = list(section.model_fields) if section is not None else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        return "unknown setting" + (f" (did you mean {close[0]!r}?)" if close else "")
    msg = msg.removeprefix("Value error, ").replace("Input should be", "must be")
    msg = msg.replace("String should match pattern", "must match the pattern")
    said = ("value_error", "literal_error", "string_pattern_mismatch")  # msg says it all
    allowed = _allowed(_field(model, loc)) if kind not in said else ""
    return f"{msg} (allowed: {allowed})" if allowed else msg


def explain(exc: ValidationError, model: type[BaseModel], path: Path | None,
            overrides: Mapping[str, object]) -> list[str]:
    """One line per error: the setting as written, its source, value and what is allowed."""
    env = _environment()
    document: dict[str, Any] = {}
    if path is not None and path.is_file():
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            document = {}
    problems = []
    for error in exc.errors():
        loc: Loc = tuple(error.get("loc", ()))
        if not loc:
            problems.append(str(error.get("msg", "")).removeprefix("Value error, "))
            continue
        if error.get("type") == "missing":
            sources = _section_sources(loc[:-1], env, document, path)
            problems.append(f"{_file_name(loc)} (from {sources}): required")
            continue
        info = _field(model, loc)
        leaf = info is not None and _model_in(info.annotation) is None
        value = _value(loc, info, error.get("input"))
        env_name = _env_name(loc, env)
        one_value = leaf or error.get("type") == "extra_forbidden"
        if loc[0] in overrides and loc[0] != "data_dir":
            where = f"{'.'.join(str(p) for p in loc)} (command line)"
        elif env_name is not None and one_value:
            where = f"{env_name} (environment)"
        elif path is not None and one_value and _file_value(document, loc):
            where = f"{_file_name(loc)} in {path}"
        else:
            name = _file_name(loc) if leaf or len(loc) > 1 else f"[{loc[0]}]"
            where = f"{name} (from {_section_sources(loc, env, document, path)})"
            value = ""
        shown = f" = {value}" if value else ""
        problems.append(f"{where}{shown}: {_why(error, model, loc)}")
    return problems


def explain_all(exc: ValidationError, model: type[BaseModel], path: Path | None,
                overrides: Mapping[str, object]) -> str:
    problems: Sequence[str] = explain(exc, model, path, overrides)
    return "invalid settings: " + "; ".join(problems)
