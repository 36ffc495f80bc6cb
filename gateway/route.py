"""A route compiled from the config: everything the data path needs, decided once."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.cluster import ClusterRuntime
from gateway.core.filters import UpstreamLayer
from gateway.filter_chain import FilterChain
from gateway.http.headers import HeaderRules
from gateway.observability import RouteMetrics
from routing.resilience.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class PrefixRewrite:
    prefix: str
    replacement: str

    def apply(self, path: str) -> str:
        """Replace the matched prefix; a slash is never doubled ("/api" -> "/" makes "/api/x" "/x")."""
        if not path.startswith(self.prefix):
            return path
        rest = path[len(self.prefix) :]
        if self.replacement.endswith("/") and rest.startswith("/"):
            rest = rest[1:]
        rewritten = self.replacement + rest
        return rewritten if rewritten.startswith("/") else "/" + rewritten


@dataclass(eq=False, slots=True)
class CompiledRoute:
    name: str
    cluster: ClusterRuntime | None
    """The route's cluster; None when an experiment picks it per request, or for feedback."""
    retry: RetryPolicy | None
    """The route's own retry policy; None: the chosen cluster's."""
    timeout: float | None
    """The route's own upstream timeout; None: the chosen cluster's."""
    request_headers: HeaderRules
    response_headers: HeaderRules
    rewrite: PrefixRewrite | None
    metrics: RouteMetrics
    filters: FilterChain
    layer: UpstreamLayer | None = None
    """A filter that sends the route's requests itself (batching) instead of proxying each."""
    experiment: str | None = None
    feedback: bool = False
    model_rewrite: str | None = None
    """On an OpenAI route: the model name the upstream gets in the body (the route's alias target)."""
    chain_key: tuple[object, ...] = ()
    """What the filter chain was built from (`runtime._chain_key`): a reload that gives the route the
    same key keeps the chain, and with it the filters' in-process state."""
