"""config/schema.json stays in step with the models, and documents every field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config import json_schema, render_json_schema
from gateway.config.schema import main

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "config" / "schema.json"


def test_checked_in_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_json_schema(), (
        "config/schema.json is out of date: regenerate it with "
        "`python -m gateway.config.schema > config/schema.json`"
    )


def test_main_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    main()
    printed = capsys.readouterr().out
    assert printed.endswith("}\n")
    assert json.loads(printed) == json_schema()


def test_schema_names_itself() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "turnout configuration"
    assert "listeners" in schema["description"]
    assert schema["required"] == ["clusters", "routes"]


def test_key_order_is_stable_and_sorted() -> None:
    def keys_sorted(value: Any) -> bool:
        if isinstance(value, dict):
            return list(value) == sorted(value) and all(keys_sorted(item) for item in value.values())
        if isinstance(value, list):
            return all(keys_sorted(item) for item in value)
        return True

    first = json_schema()
    assert keys_sorted(first)
    assert json.dumps(first) == json.dumps(json_schema())


def test_every_field_is_described() -> None:
    undocumented = [
        f"{model}.{field}"
        for model, definition in json_schema()["$defs"].items()
        for field, spec in definition.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undocumented == []
    assert all(definition.get("description") for definition in json_schema()["$defs"].values())


def test_short_forms_are_in_the_schema() -> None:
    definitions = json_schema()["$defs"]
    route = definitions["RouteConfig"]
    assert "name" not in route["required"]  # defaults to route-<index>
    cluster = definitions["ClusterConfig"]["properties"]
    assert {"enum", "type"} <= set(cluster["balancer"]["anyOf"][0])
    endpoint_forms = cluster["endpoints"]["items"]["anyOf"]
    assert {"type": "string"} in endpoint_forms
    filter_forms = route["properties"]["filters"]["items"]["anyOf"]
    assert [form["type"] for form in filter_forms] == ["string", "object", "object"]
