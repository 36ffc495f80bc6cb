"""Another endpoint for a unary call whose upstream was unavailable before it answered anything.

A gRPC UNAVAILABLE with no response message means the call never reached a server that took it (a
connection refused or reset, a server going away): sending it elsewhere cannot do it twice. The
route's retry policy (or its cluster's) decides as for an HTTP connect failure, within its attempts
and its budget; the failed endpoint is charged, so outlier detection ejects one that keeps failing.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING

from routing.resilience.retry import CONNECT_FAILURE

if TYPE_CHECKING:
    from gateway.mesh.exchange import MeshExchange
    from gateway.runtime import Runtime
    from routing.resilience.retry import RetryPolicy


def retry_policy(exchange: MeshExchange, runtime: Runtime) -> RetryPolicy | None:
    """The policy that decides the exchange's retries: its route's, else its cluster's."""
    route = exchange.route
    if route is not None and route.retry is not None:
        return route.retry
    cluster = runtime.clusters.get(exchange.ctx.cluster)
    return cluster.retry if cluster is not None else None


def retry_elsewhere(exchange: MeshExchange, runtime: Runtime) -> str | None:
    """Move the exchange to another eligible endpoint of its cluster and return its address, or
    None when the policy, its budget or the cluster has no retry to give. A retry it grants holds
    a place in the policy's budget until the caller releases it (`policy.budget.release_retry()`).
    Waits for no back-off: the next endpoint is a different server."""
    failed = exchange.endpoint
    ctx = exchange.ctx
    cluster = runtime.clusters.get(ctx.cluster)
    if failed is None or cluster is None:
        return None
    policy = retry_policy(exchange, runtime)
    if policy is None or ctx.retries >= policy.max_retries or not policy.should_retry(CONNECT_FAILURE, None):
        return None
    endpoints = cluster.endpoints
    endpoints.on_failure(failed, monotonic())
    endpoints.on_finish(failed)
    exchange.endpoint = None
    ctx.endpoint = ""
    other = endpoints.pick(ctx, avoid=failed)
    if other is None or other is failed or not policy.budget.try_acquire_retry():
        return None
    endpoints.on_start(other)
    exchange.endpoint = other
    ctx.endpoint = other.address
    ctx.retries += 1
    cluster.retries += 1
    return other.address
