"""The tracer without sockets: sampling decisions, traceparents, and what tracing off leaves out."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from gateway.config.errors import ConfigError
from gateway.config.models.tracing import TracingConfig
from gateway.core.context import RequestContext
from gateway.loading import load_gateway_config
from gateway.observability import GatewayMetrics
from gateway.runtime import build_runtime
from gateway.tracing import RequestSpan, Tracing, UnsampledTrace, _parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
# Nothing listens on port 9 (discard) on loopback: exports fail on the exporter's thread, unseen.
NOWHERE = "http://127.0.0.1:9/v1/traces"


def _ctx(headers: dict[str, str] | None = None) -> RequestContext:
    return RequestContext("GET", "/x", "", headers or {}, "127.0.0.1", 0.0, "id", route="r")


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (f"00-{TRACE}-{PARENT}-01", (TRACE, 1)),
        (f"00-{TRACE}-{PARENT}-00", (TRACE, 0)),
        (f"01-{TRACE}-{PARENT}-03-more", (TRACE, 3)),  # a later version may append fields
        (f"00-{TRACE}-{PARENT}-01-more", None),  # version 00 may not
        (f"ff-{TRACE}-{PARENT}-01", None),
        (f"00-{'0' * 32}-{PARENT}-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"00-{TRACE[:-1]}g-{PARENT}-01", None),
        ("garbage", None),
    ],
)
def test_traceparents_are_read_as_w3c_trace_context_says(value: str, parsed: tuple[str, int] | None) -> None:
    assert _parse_traceparent(value) == parsed


async def test_new_traces_are_recorded_at_the_sampling_ratio() -> None:
    tracing = Tracing(TracingConfig(enabled=True, sampling_ratio=0.25, endpoint=NOWHERE))
    tracing.open()
    try:
        n = 4000
        traces = [tracing.begin(_ctx()) for _ in range(n)]
        recorded = sum(isinstance(t, RequestSpan) for t in traces)
        # Binomial(n, 0.25): 6 standard deviations either side fails once in ~10^9 runs.
        assert abs(recorded - n * 0.25) <= 6 * math.sqrt(n * 0.25 * 0.75)
        left_out = [t for t in traces if isinstance(t, UnsampledTrace)]
        assert len({t.trace_id for t in left_out}) == len(left_out)  # each a trace of its own
        sent = left_out[0].attempt("127.0.0.1:80", 0).traceparent
        assert _parse_traceparent(sent) == (left_out[0].trace_id, 0)
    finally:
        await tracing.close()


async def test_the_clients_sampled_flag_decides_for_its_trace() -> None:
    never = Tracing(TracingConfig(enabled=True, sampling_ratio=0.0, endpoint=NOWHERE))
    always = Tracing(TracingConfig(enabled=True, sampling_ratio=1.0, endpoint=NOWHERE))
    never.open()
    always.open()
    try:
        sampled = never.begin(_ctx({"traceparent": f"00-{TRACE}-{PARENT}-01"}))
        assert isinstance(sampled, RequestSpan)
        context = sampled.server_span.get_span_context()
        assert f"{context.trace_id:032x}" == TRACE
        sent = sampled.attempt("127.0.0.1:80", 0).traceparent
        assert sent.startswith(f"00-{TRACE}-") and sent.endswith("-01") and PARENT not in sent

        left_out = always.begin(_ctx({"traceparent": f"00-{TRACE}-{PARENT}-00"}))
        assert isinstance(left_out, UnsampledTrace)
        sent = left_out.attempt("127.0.0.1:80", 0).traceparent
        assert _parse_traceparent(sent) == (TRACE, 0) and PARENT not in sent
        # A traceparent that does not parse starts a new trace, sampled by the ratio.
        assert isinstance(always.begin(_ctx({"traceparent": "nonsense"})), RequestSpan)
        assert isinstance(never.begin(_ctx({"traceparent": "nonsense"})), UnsampledTrace)
    finally:
        await never.close()
        await always.close()


def _config(tmp_path: Path, tracing: dict[str, object] | None) -> Path:
    config: dict[str, object] = {
        "listen": {"host": "127.0.0.1", "port": 18080},
        "admin": {"host": "127.0.0.1", "port": 19901},
        "clusters": {"up": {"endpoints": ["127.0.0.1:9"]}},
        "routes": [{"name": "all", "match": {"prefix": "/"}, "backend": {"cluster": "up"}}],
    }
    if tracing is not None:
        config["tracing"] = tracing
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_tracing_off_leaves_the_hook_out_of_every_chain(tmp_path: Path) -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    off = build_runtime(load_gateway_config(_config(tmp_path, None)), metrics, None, None)
    assert off.tracing is None
    assert off.routes[0].filters.tracer is None and off.routes[0].filters.empty

    on_config = load_gateway_config(_config(tmp_path, {"enabled": True, "endpoint": NOWHERE}))
    on = build_runtime(on_config, GatewayMetrics(CollectorRegistry()), None, None)
    assert on.tracing is not None and on.routes[0].filters.tracer is on.tracing.filter
    assert not on.routes[0].filters.empty and not on.routes[0].filters.edits_headers
    # A reload that leaves tracing: alone keeps the tracer and the chains built with it.
    again = build_runtime(on_config, GatewayMetrics(CollectorRegistry()), None, on)
    assert again.tracing is on.tracing and again.routes[0].filters is on.routes[0].filters
    changed = load_gateway_config(
        _config(tmp_path, {"enabled": True, "endpoint": NOWHERE, "sampling_ratio": 1})
    )
    other = build_runtime(changed, GatewayMetrics(CollectorRegistry()), None, on)
    assert other.tracing is not None and other.tracing is not on.tracing
    assert other.routes[0].filters.tracer is other.tracing.filter


def test_a_sampling_ratio_outside_zero_to_one_is_a_located_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_gateway_config(_config(tmp_path, {"enabled": True, "sampling_ratio": 1.5}))
    assert "tracing.sampling_ratio" in str(error.value)


def test_tracing_without_the_sdk_installed_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.config.models.tracing as model

    monkeypatch.setattr(model, "_installed", lambda *modules: False)
    with pytest.raises(ConfigError) as error:
        load_gateway_config(_config(tmp_path, {"enabled": True}))
    assert "tracing.enabled" in str(error.value) and "turnout[tracing]" in str(error.value)
    load_gateway_config(_config(tmp_path, {"enabled": False}))  # off needs nothing


def test_tracing_over_the_older_otel_protos_xds_protos_carries_says_how_to_restore_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # xds-protos installs an older copy of opentelemetry-proto's files, without InstrumentationScope;
    # the exporter would fail at the gateway's start, so the config is refused first.
    from opentelemetry.proto.common.v1 import common_pb2

    monkeypatch.delattr(common_pb2, "InstrumentationScope")
    with pytest.raises(ConfigError) as error:
        load_gateway_config(_config(tmp_path, {"enabled": True}))
    assert "tracing.enabled" in str(error.value)
    assert "--force-reinstall --no-deps opentelemetry-proto" in str(error.value)
