"""The device routes' bodies, in msgspec (identity.messages): the raw body decoded into
its struct in one call (a schema violation is a 422 ``request.invalid`` problem with
``errors``, like any other), the answer encoded in one call, and the OpenAPI entries that
describe both (the structs' JSON Schema, by reference to ``components/schemas``)."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from identity.messages import decode, encode, schemas

M = TypeVar("M", bound=msgspec.Struct)
REF = "#/components/schemas/{name}"
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


class MessageResponse(JSONResponse):
    """A protocol answer (an identity.messages struct) as JSON, encoded by msgspec (a
    JSONResponse, so the OpenAPI document describes it as JSON, by its struct's schema)."""

    def render(self, content: Any) -> bytes:
        return encode(content)


async def read(request: Request, model: type[M]) -> M:
    """The request's body as ``model``; RequestValidationError (422) when it is not."""
    data = await request.body()
    try:
        return decode(model, data)
    except msgspec.ValidationError as exc:
        raise RequestValidationError([_error(str(exc))]) from exc
    except msgspec.DecodeError as exc:
        raise RequestValidationError([{"loc": ["body"], "msg": str(exc)}]) from exc


def _error(message: str) -> dict[str, Any]:
    """msgspec's "Expected `int`, got `str` - at `$.quote.attest`" as FastAPI's shape:
    ``{"loc": ["body", "quote", "attest"], "msg": "Expected `int`, got `str`"}``."""
    msg, _, path = message.partition(" - at `$")
    loc: list[str | int] = ["body"]
    for name, index in _PART.findall(path.removesuffix("`")):
        loc.append(int(index) if index else name)
    return {"loc": loc, "msg": msg}


def _ref(model: type[msgspec.Struct]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(name=model.__name__)}}}


def request_body(model: type[msgspec.Struct]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` with ``read``."""
    return {"requestBody": {"required": True, "content": _ref(model)}}


def answer(model: type[msgspec.Struct], status: int = 200,
           description: str = "Successful Response") -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entry for a route answering ``model`` with ``status``."""
    return {status: {"description": description, "content": _ref(model)}}


def components() -> dict[str, Any]:
    """The protocol structs' schemas, to merge into ``components/schemas`` (the
    onboarding structs of identity.devid.messages included)."""
    from identity.devid.messages import STRUCTS as ONBOARDING

    out = schemas(REF)
    out.update(msgspec.json.schema_components(ONBOARDING, ref_template=REF)[1])
    return out
