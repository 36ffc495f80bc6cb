"""Dynamic batching in front of Open Inference Protocol v2 and KServe V1 servers.

An upstream layer rather than a request filter: it wraps the cluster's "send" callable. The data
path parses a request, submits it, and answers the client with the member's share of the batched
answer. See `batcher.py` for the life of a request and `config.py` for the options.
"""

from plugins.batching.batcher import Batcher
from plugins.batching.config import AdaptiveConfig, BatchingConfig
from plugins.batching.filter import FACTORY, BatchingFilter
from plugins.batching.member import BatchAnswer, PendingRequest
from plugins.batching.metrics import BatchingMetrics
from plugins.batching.upstream import BatchUpstream, SendBatch, UpstreamAnswer, UpstreamReply

__all__ = [
    "FACTORY",
    "AdaptiveConfig",
    "BatchAnswer",
    "BatchUpstream",
    "Batcher",
    "BatchingConfig",
    "BatchingFilter",
    "BatchingMetrics",
    "PendingRequest",
    "SendBatch",
    "UpstreamAnswer",
    "UpstreamReply",
]
