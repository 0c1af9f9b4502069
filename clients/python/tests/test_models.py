"""The client's models against the server's own OpenAPI document: every field the server
declares on the types the client reads is a field of the model, required ones required, and every
enum value is known. A server change that would drift from the client fails here."""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel

from reins import _models as m

from .conftest import Server

MODELS: list[tuple[str, type[BaseModel]]] = [
    ("Decision", m.Decision),
    ("Reason", m.Reason),
    ("AccessRequest", m.AccessRequest),
    ("LedgerRef", m.LedgerRef),
    ("DecisionRequest", m.DecisionRequest),
    ("ResourceRef", m.ResourceRef),
    ("EvaluationError", m.EvaluationError),
    ("DecisionTrace", m.DecisionTrace),
]
ENUMS: list[tuple[str, type[Enum]]] = [
    ("ReasonCode", m.ReasonCode),
    ("Outcome", m.Outcome),
    ("ApprovalStatus", m.ApprovalStatus),
]


@pytest.fixture(scope="module")
def schemas(server: Server) -> dict[str, Any]:
    document = server.get("/openapi.json", server.tokens["admin"]).json()
    found: dict[str, Any] = document["components"]["schemas"]
    return found


@pytest.mark.parametrize(("name", "model"), MODELS)
def test_model_fields_match_the_server(
    schemas: dict[str, Any], name: str, model: type[BaseModel]
) -> None:
    schema = schemas[name]
    declared = set(schema.get("properties", {}))
    fields = set(model.model_fields)
    assert declared - fields == set(), f"{name}: the server has fields the client lacks"
    assert fields - declared == set(), f"{name}: the client has fields the server lacks"
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert required <= set(schema.get("required", [])), f"{name}: required only in the client"


@pytest.mark.parametrize(("name", "enum"), ENUMS)
def test_enum_values_match_the_server(schemas: dict[str, Any], name: str, enum: type[Enum]) -> None:
    server_values = set(schemas[name]["enum"])
    client_values = {e.value for e in enum} - {m.ReasonCode.UNREACHABLE.value}
    assert server_values == client_values, name
