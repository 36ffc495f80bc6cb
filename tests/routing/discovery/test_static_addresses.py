from __future__ import annotations

import pytest

from routing.discovery.static import is_ip_literal, parse_address, parse_addresses


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        (" 10.0.0.2:80 ", ("10.0.0.2", 80)),
        ("[::1]:9001", ("::1", 9001)),
        ("[2001:db8::5]:443", ("2001:db8::5", 443)),
        ("models.internal:8080", ("models.internal", 8080)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text", ["127.0.0.1", ":9000", "host:0", "host:65536", "host:http", "::1:9000", "[::1]9000", "[nope]:1"]
)
def test_invalid_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_split_into_ip_endpoints_and_hostnames() -> None:
    parsed = parse_addresses(
        ["127.0.0.1:9000", ("[::1]:9001", 3), "Workers.Internal:8000", ("localhost:7000", 2)]
    )
    assert [(ep.address, ep.weight) for ep in parsed.endpoints] == [("127.0.0.1:9000", 1), ("[::1]:9001", 3)]
    assert parsed.hostnames == (("workers.internal", 8000, 1), ("localhost", 7000, 2))


def test_weight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="weight"):
        parse_addresses([("127.0.0.1:1", 0)])


def test_ip_literal_detection() -> None:
    assert is_ip_literal("10.0.0.1")
    assert is_ip_literal("fe80::1")
    assert not is_ip_literal("localhost")
