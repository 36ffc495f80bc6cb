"""The admin API's OpenAPI description covers every route, and a running gateway keeps to it.

The schemathesis run sends generated requests, valid and not, to every operation of a real gateway
process and checks that none gets a server error and every answer has a documented status, content
type and shape. It is bounded (examples per operation, a deadline) to stay well under a minute. The
reload operation re-reads the unchanged config file, so it cannot stop the gateway; endpoints the
run adds stay within what the admin API accepts (no link-local or metadata address gets in).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
import yaml
from aiohttp import web
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.admin import add_admin_routes
from gateway.admin_openapi import OPENAPI
from tests.conftest import gateway_config
from tests.support.processes import GatewayProcess, Process, start_gateway

# Generated requests per operation: enough to reach each handler's refusals and answers; the 21
# operations at this many take about 15 s on a 2-core machine, gateway start included.
EXAMPLES_PER_OPERATION = 20
# A request to the admin API answers in milliseconds; a report renders in well under a second.
DEADLINE_MS = 3000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
METHODS = ("get", "put", "post", "delete", "patch")


def test_every_route_of_the_admin_app_is_described_and_nothing_else() -> None:
    app = web.Application()
    add_admin_routes(app)
    registered = {
        (resource.canonical, route.method.lower())
        for resource in app.router.resources()
        for route in resource
        if route.method != "HEAD"  # aiohttp answers HEAD for every GET
    }
    described = {
        (path, method) for path, item in OPENAPI["paths"].items() for method in item if method in METHODS
    }
    assert registered == described


@pytest.fixture
def gateway(
    upstream_a: Process, upstream_b: Process, session_logs: Path, tmp_path: Path
) -> Iterator[GatewayProcess]:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[
            {
                "name": "cached",
                "match": {"prefix": "/cached/"},
                "backend": {"cluster": "up"},
                "filters": [{"cache": {}}],
            },
            {"name": "ab", "match": {"prefix": "/"}, "backend": {"experiment": "exp"}},
        ],
    )
    config["clusters"]["b"] = {"endpoints": [f"127.0.0.1:{upstream_b.port}"]}
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    config["experiments"] = {
        "exp": {
            "kind": "ab",
            "unit": ["header:x-user-id"],
            "arms": {"control": {"cluster": "up", "weight": 50}, "treatment": {"cluster": "b", "weight": 50}},
        }
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    process = start_gateway(path, config["listen"]["port"], config["admin"]["port"], session_logs)
    yield process
    process.stop()


def _with_known_names(case: Any, path_names: dict[str, str] | None, address: str | None) -> Any:
    """Cases that name the configured cluster, experiment and endpoint (`path_names`), or a body
    address that may be added (`address`), so the handlers behind the 404s and the address checks
    run too; the others keep what was generated."""
    if path_names is not None:
        for name in case.path_parameters or {}:
            case.path_parameters[name] = path_names.get(name, case.path_parameters[name])
    if address is not None and isinstance(case.body, dict) and "address" in case.body:
        case.body["address"] = address
    return case


def _fuzz(operation: Any, base_url: str, known: dict[str, str], address: str) -> set[int]:
    """Run the generated cases of one operation; the statuses it answered."""
    statuses: set[int] = set()
    strategy = st.builds(
        _with_known_names,
        operation.as_strategy(),
        st.sampled_from([None, known]),
        st.sampled_from([None, address]),
    )

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=DEADLINE_MS,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @hypothesis.given(case=strategy)
    def run(case: Any) -> None:
        statuses.add(case.call_and_validate(base_url=base_url, checks=CHECKS).status_code)

    run()
    return statuses


def test_a_running_gateway_answers_as_its_openapi_description_says(
    gateway: GatewayProcess, upstream_a: Process, upstream_b: Process
) -> None:
    with urllib.request.urlopen(f"{gateway.admin_url}/admin/openapi.json", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        served = json.loads(response.read())
    assert served == json.loads(json.dumps(OPENAPI))
    schema = schemathesis.openapi.from_dict(served)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(
        1 for item in OPENAPI["paths"].values() for method in item if method in METHODS
    )
    known = {"cluster": "up", "name": "exp", "address": f"127.0.0.1:{upstream_a.port}"}
    answered = {
        operation.label: _fuzz(operation, gateway.admin_url, known, f"127.0.0.1:{upstream_b.port}")
        for operation in operations
    }
    # Every operation got past the guard to its handler at least once.
    assert all(statuses - {401, 403, 413, 415} for statuses in answered.values()), answered
    # The run changed state through the API; the gateway still serves, and no endpoint it refuses
    # got in.
    with urllib.request.urlopen(f"{gateway.admin_url}/readyz", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{gateway.admin_url}/admin/clusters", timeout=5) as response:
        addresses = [e["address"] for c in json.loads(response.read()).values() for e in c["endpoints"]]
    assert not [a for a in addresses if a.startswith(("169.254.", "[fe80:", "[fd00:ec2::254]"))]
