"""Layers around the upstream call: retry policy with a budget (`retry`), concurrency limits
(`circuit_breaker`)."""
