"""Experiments: A/B tests, canaries, blue-green switches and shadow traffic for inference routes.

How the pieces fit (each module has one job):

    config          frozen config models, one per kind, a union on `kind`
    assignment      stable hash -> 10,000 buckets; arm layouts; monotone ramps; namespaces
    units           unit ids from requests; the sticky cookie
    splits/         per kind, `choose(ctx) -> Assignment` (per request) and atomic state changes
    smoke           the blue-green readiness check (health + smoke request)
    events          exposures, outcomes, feedback, decisions; `outputs` summarises model outputs
    recorder        bounded, never-blocking hand-off of events to a store, flushed in batches
    store/          SQLite (one process) or Redis (replicas): raw events, sufficient statistics, state
    sketch          the mergeable latency histogram
    estimates       an arm's metric estimate with its standard error
    analysis        an experiment's status (`status` holds the model reports render)
    guardrails      the canary's one-sided always-valid tests; `controller` runs them each interval
    lease, sync     one controller leader among replicas; every replica adopting published state
    shadow          the mirror queue and workers; `shadow_compare` compares the answers
    stats/          the statistics (pure functions), used by everything above

The package imports `gateway.core` and nothing else of the gateway; the gateway supplies what needs
its data path (sending a request to a cluster, cluster health) as callables.
"""
