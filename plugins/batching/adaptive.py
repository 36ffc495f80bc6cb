"""Adaptive batch size: additive increase, multiplicative decrease (AIMD) against a latency objective.

Clipper (Crankshaw et al., "Clipper: A Low-Latency Online Prediction Serving System", NSDI 2017,
section 4.3) sizes batches this way: larger batches raise throughput until one call takes longer
than the latency objective, so the batch size cap is probed upwards in small steps and cut back
sharply when a call is too slow, as TCP does with its congestion window.

The rule, applied when a batched upstream call completes in `latency` seconds with `rows` rows:
- over the objective (latency > target_latency):
      cap <- max(min_batch_size, floor(min(cap, rows) * decrease_factor))
  Cutting from the slow batch's own size, not only from the cap, matters when the cap was not
  binding: a batch of 10 rows that was too slow says 10 rows is too many, whatever the cap.
- within the objective and the batch used the whole cap (rows >= cap):
      cap <- min(max_batch_size, cap + increase_step)
  A batch smaller than the cap says nothing about whether a larger one would meet the objective, so
  light traffic does not drift the cap up to a size that heavy traffic would then find too slow.
- A measurement counts only if its batch was formed after the last decrease: batches already in
  flight when the cap was cut were sized by the old cap, and punishing the new cap for them would
  cut it again for the same overload.

Constants (defaults in `AdaptiveConfig`): increase_step 1 (Clipper's additive step: one row per
batch converges within max_batch_size batches, a fraction of a second under load);
decrease_factor 0.5 (TCP's halving: one slow call brings the size well under the knee at once;
Clipper used 0.9, gentler, for which set 0.9); min_batch_size 1 (batching can always back off to
none); initial size max_batch_size (the static batcher's behaviour until a call is slow).
"""

from __future__ import annotations

from plugins.batching.config import AdaptiveConfig


class AimdBatchSize:
    """The current batch size cap of one batch queue under AIMD control."""

    __slots__ = ("_decrease", "_epoch", "_high", "_low", "_step", "_target", "cap")

    def __init__(self, config: AdaptiveConfig, max_batch_size: int) -> None:
        self._target = config.target_latency
        self._step = config.increase_step
        self._decrease = config.decrease_factor
        self._low = config.min_batch_size
        self._high = max_batch_size
        self.cap = config.initial_batch_size or max_batch_size
        self._epoch = 0

    @property
    def epoch(self) -> int:
        """Bumped by every decrease; a batch records the epoch it was formed in."""
        return self._epoch

    def observe(self, latency: float, rows: int, epoch: int) -> None:
        """Account for one batched call of `rows` rows formed in `epoch`, answered in `latency` s."""
        if epoch != self._epoch:
            return
        if latency > self._target:
            self.cap = max(self._low, int(min(self.cap, rows) * self._decrease))
            self._epoch += 1
        elif rows >= self.cap:
            self.cap = min(self._high, self.cap + self._step)
