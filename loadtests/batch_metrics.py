"""How much the gateway's batcher merged during a run, read from its Prometheus metrics.

The batcher observes, per upstream batch, `turnout_batch_size` (rows) and `turnout_batch_members`
(requests). Both are histograms, so their `_count` and `_sum` series are running totals; the
difference between a scrape before and one after the run gives the run's batches, rows and
requests, summed over every model and cluster. Requests per batch is the figure that shows whether
batching took place: 1.0 means every request went alone.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

ROWS_METRIC = "turnout_batch_size"
MEMBERS_METRIC = "turnout_batch_members"
# A scrape of a local admin listener takes milliseconds; beyond this it is not answering.
SCRAPE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class BatchTotals:
    batches: float
    rows: float
    requests: float

    def __sub__(self, earlier: BatchTotals) -> BatchTotals:
        return BatchTotals(
            self.batches - earlier.batches, self.rows - earlier.rows, self.requests - earlier.requests
        )

    @property
    def requests_per_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0

    @property
    def rows_per_batch(self) -> float:
        return self.rows / self.batches if self.batches else 0.0


def parse_batch_totals(exposition: str) -> BatchTotals:
    """Totals over every label set in a Prometheus text exposition; zeros where the metrics are absent."""
    sums = {f"{ROWS_METRIC}_count": 0.0, f"{ROWS_METRIC}_sum": 0.0, f"{MEMBERS_METRIC}_sum": 0.0}
    for family in text_string_to_metric_families(exposition):
        if family.name not in (ROWS_METRIC, MEMBERS_METRIC):
            continue
        for sample in family.samples:
            if sample.name in sums:
                sums[sample.name] += sample.value
    return BatchTotals(
        batches=sums[f"{ROWS_METRIC}_count"],
        rows=sums[f"{ROWS_METRIC}_sum"],
        requests=sums[f"{MEMBERS_METRIC}_sum"],
    )


def scrape_batch_totals(admin_url: str, token: str = "") -> BatchTotals | None:
    """The admin listener's current totals; None when /metrics cannot be read (down, or refused)."""
    request = urllib.request.Request(f"{admin_url}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=SCRAPE_TIMEOUT_S) as response:
            text = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return None
    try:
        return parse_batch_totals(text)
    except ValueError:
        return None
