"""Options of the `monitor` filter: which models, the reference each is compared with, sampling and
drift thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.core.config_types import Duration, StrictModel


class ModelMonitorConfig(StrictModel):
    """One monitored model."""

    reference: str | None = Field(
        default=None,
        description="A file of reference rows (.npy, .csv with a header, or .parquet), relative to the "
        "config file; drift is measured against it. Without one, only data quality and outputs are kept.",
    )
    reference_arm: str | None = Field(
        default=None,
        description="On an experiment route: measure each other arm's drift against this arm's live "
        "traffic (the control). Without a reference file, `window` rows of this arm's traffic (its first "
        "one or two steps) fix the bins and become the reference of every series of the model.",
    )
    features: tuple[str, ...] | None = Field(
        default=None,
        description="Feature names in column order; a CSV or Parquet reference must have exactly these "
        "columns. Default: the reference's own header, else features by index.",
    )


class MonitorConfig(StrictModel):
    """`monitor`: sample requests and answers, and watch each model's inputs and outputs for drift."""

    models: dict[str, ModelMonitorConfig] = Field(
        min_length=1, description="The models to monitor, by the model name the route sees."
    )
    # 10%: at 1,000 requests/s that is 100 samples/s, a window of 1,000 rows in 10 s; the gateway's
    # CPU per request rises by about 5% (bench/monitor_cost.py, docs/monitoring.md#cost).
    sample_rate: float = Field(default=0.1, gt=0, le=1, description="The share of answered requests sampled.")
    protocol: Literal["auto", "oip_v2", "kserve_v1", "openai"] = Field(
        default="auto", description="How bodies are read; auto tells OIP v2, KServe v1 and OpenAI apart."
    )
    # Deciles: the usual binning for PSI (each bin a tenth of the reference).
    bins: int = Field(default=10, ge=2, le=100, description="Quantile bins per feature, from the reference.")
    # 1,000 rows per window: drift is measured on the last 1,000 to 2,000 rows, where PSI's noise
    # (about 9 * (1/n + 1/N) for deciles) is far below the warn threshold.
    window: int = Field(default=1000, ge=10, description="Rows per drift window (drift uses the last two).")
    # 500 rows: with deciles and a reference of ~500 rows or more, PSI without drift stays under 0.1
    # in more than 99% of windows (the chi-square(9) 99th percentile is 21.7; 21.7 * (1/500 + 1/569)
    # = 0.08); tests/monitoring/test_monitor_simulation.py checks it.
    min_samples: int = Field(default=500, ge=1, description="Rows before a feature may leave state ok.")
    psi_warn: float = Field(default=0.1, gt=0, description="PSI from which a feature is in state warn.")
    psi_alert: float = Field(default=0.25, gt=0, description="PSI from which a feature is in state alert.")
    # 1 s: at 100 samples/s, steps of about 64 samples, each one numpy pass instead of 64; the
    # report lags traffic by about this much.
    flush_interval: Duration = Field(
        default=1.0, ge=0, description="How long the background task lets samples gather before a step."
    )
    # 6 hours: a baseline taken "from the last 2h" (or 6h) of traffic after a deploy, at 8.6 MB per
    # model of 30 features (plugins/monitor/history.py).
    history: Duration = Field(
        default=6 * 3600.0,
        ge=0,
        description="How long a sample of each model's input rows is kept, for a reference taken from "
        "live traffic (`turnout monitor baseline MODEL --from 2h`); 0 keeps none.",
    )
    # 1,024 samples: seconds of backlog at 100 samples/s; beyond it samples are dropped and counted.
    queue_size: int = Field(default=1024, ge=1, description="Samples waiting for the background task.")

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> MonitorConfig:
        if self.psi_alert < self.psi_warn:
            raise ValueError("psi_alert must be at least psi_warn")
        return self
