"""The "write your own filter" example of docs/filters.md, run as written (code taken from the page)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import gateway_config
from tests.support.processes import ROOT, Process


@pytest.fixture
def my_filters(tmp_path: Path) -> Iterator[None]:
    readme = (ROOT / "docs" / "filters.md").read_text()
    block = re.search(r"```python\n# my_filters/__init__.py\n(.*?)```", readme, re.S)
    assert block is not None, "docs/filters.md lost its filter example"
    package = tmp_path / "my_filters"
    package.mkdir()
    (package / "__init__.py").write_text(block.group(1))
    sys.path.insert(0, str(tmp_path))
    yield
    sys.path.remove(str(tmp_path))
    sys.modules.pop("my_filters", None)


async def test_the_readme_filter_works_as_documented(
    my_filters: None, make_gateway: Any, upstream_a: Process
) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[
            {
                "match": {"prefix": "/"},
                "backend": {"cluster": "up"},
                "filters": [{"plugin": "my_filters:REQUIRE_TENANT", "config": {"header": "x-tenant"}}],
            }
        ],
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gw.data_port}/echo"
        async with session.get(url) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "x-tenant is required"
            assert response.headers["x-served-tenant"] == ""
        async with session.get(url, headers={"x-tenant": "acme"}) as response:
            assert response.status == 200
            assert response.headers["x-served-tenant"] == "acme"
            assert (await response.json())["headers"]["x-upstream-tenant"] == "acme"
