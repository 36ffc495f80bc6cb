"""Durations, sizes and rates: what parses, to what, and what is refused with a clear message."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, ListenConfig, load_config_text
from gateway.core.config_types import Rate, parse_duration, parse_rate, parse_size

CLUSTER_AND_ROUTE = """
clusters:
  up: {endpoints: [127.0.0.1:9101]}
routes:
  - backend: {cluster: up}
"""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1m", 60.0), ("1.5h", 5400.0), ("100us", 0.0001), (3, 3.0), (0.5, 0.5)],
)
def test_durations_parse(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert ListenConfig.model_validate({"idle_timeout": text}).idle_timeout == pytest.approx(seconds)


@pytest.mark.parametrize("garbage", ["soon", "5 parsecs", "-1s", "1d", "", True, -2, [1]])
def test_durations_reject_garbage(garbage: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(garbage)


@pytest.mark.parametrize(
    ("text", "size"), [("64KiB", 65536), ("10MB", 10_000_000), ("1GiB", 1024**3), ("512B", 512), (123, 123)]
)
def test_sizes_parse(text: str | int, size: int) -> None:
    assert parse_size(text) == size
    assert ListenConfig.model_validate({"max_body_bytes": text}).max_body_bytes == size


@pytest.mark.parametrize("garbage", ["1.5MiB", "12 apples", "MiB", -1, 2.5, None])
def test_sizes_reject_garbage(garbage: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(garbage)


@pytest.mark.parametrize(
    ("text", "per_second"), [("100/s", 100.0), ("5000/min", 5000 / 60), ("36/hour", 0.01), ("1/d", 1 / 86400)]
)
def test_rates_parse(text: str, per_second: float) -> None:
    assert parse_rate(text).per_second == pytest.approx(per_second)


@pytest.mark.parametrize("garbage", ["fast", "0/s", "10/fortnight", "10", "/s"])
def test_rates_reject_garbage(garbage: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(garbage)


def test_rate_prints_back() -> None:
    assert str(Rate(100, 1.0)) == "100/s"


def test_bad_values_are_reported_with_line_and_path() -> None:
    text = (
        "listen:\n  idle_timeout: soon\n  max_body_bytes: 10 parsecs\n  header_timeout: 0s\n"
        + CLUSTER_AND_ROUTE
    )
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "x.yaml")
    assert caught.value.errors == [
        "x.yaml:2: listen.idle_timeout: invalid duration 'soon': use a number with a unit (us, ms, s, m, h), "
        "like 250ms",
        "x.yaml:3: listen.max_body_bytes: invalid size '10 parsecs': use bytes or a unit "
        "(KiB, MiB, GiB, KB, MB, GB), like 10MiB",
        "x.yaml:4: listen.header_timeout: must be longer than zero, like 1s or 250ms",
    ]


def test_zero_is_allowed_where_it_means_off() -> None:
    config = load_config_text("listen: {drain_timeout: 0s}\n" + CLUSTER_AND_ROUTE, "x.yaml", env={})
    assert config.listen.drain_timeout == 0.0
