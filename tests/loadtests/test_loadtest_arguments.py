"""The runner's command line: durations, loopback-only targets, options passed to Locust."""

from __future__ import annotations

import pytest

from loadtests.arguments import (
    DEMO_ADMIN,
    DEMO_GRPC_TARGET,
    DEMO_HOST,
    parse_duration,
    parse_options,
    require_loopback_target,
    require_loopback_url,
)


@pytest.mark.parametrize(
    ("text", "seconds"), [("20s", 20), ("2m", 120), ("1m30s", 90), ("1h", 3600), ("45", 45), (" 5s ", 5)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "20x", "s", "1.5s", "-3s", "m20"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8080", "http://10.0.0.1:8080", "http://example.com", "ftp://127.0.0.1", "127.0.0.1"],
)
def test_only_loopback_urls_are_targets(url: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        require_loopback_url(url)


def test_loopback_urls_lose_their_trailing_slash() -> None:
    assert require_loopback_url("https://127.0.0.1:8443/") == "https://127.0.0.1:8443"


@pytest.mark.parametrize("target", ["localhost:8011", "10.1.1.1:8011", "127.0.0.1", "127.0.0.1:port"])
def test_only_loopback_grpc_targets(target: str) -> None:
    with pytest.raises(ValueError):
        require_loopback_target(target)


def test_defaults_point_at_the_demo_stack() -> None:
    options = parse_options(["--scenario", "ab"])
    assert (options.host, options.admin, options.grpc_target) == (DEMO_HOST, DEMO_ADMIN, DEMO_GRPC_TARGET)
    assert options.duration_s == 20
    assert options.spawn_rate == options.users  # all users start within the first second
    assert options.start_demo
    assert options.results_dir.name == "results" and options.results_dir.parent.name == "loadtests"


def test_locust_options_after_the_separator_are_passed_on() -> None:
    options = parse_options(
        ["--scenario", "ab", "--users", "50", "--duration", "1m", "--no-start", "--", "--user-pool", "9000"]
    )
    assert (options.users, options.duration_s, options.start_demo) == (50, 60, False)
    assert options.locust_args == ("--user-pool", "9000")


@pytest.mark.parametrize(
    "argv",
    [
        ["--scenario", "nope"],
        ["--scenario", "ab", "--host", "http://192.168.1.2:8080"],
        ["--scenario", "ab", "--users", "0"],
        ["--scenario", "ab", "--spawn-rate", "0"],
        ["--scenario", "ab", "--duration", "soon"],
        ["--scenario", "ab", "--", "--host", "http://10.0.0.1"],
        ["--scenario", "grpc", "--", "--grpc-target=10.0.0.1:8011"],
    ],
)
def test_bad_command_lines_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_options(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err
