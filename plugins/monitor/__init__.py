"""`monitor`: model quality at the gateway: sampled inputs and outputs, drift against a reference."""

from gateway.core.filters import FilterFactory
from plugins.monitor.config import MonitorConfig
from plugins.monitor.factory import MonitorFilterFactory
from plugins.monitor.filter import MonitorFilter
from plugins.monitor.report import model_report

FACTORY: FilterFactory = MonitorFilterFactory()

__all__ = ["FACTORY", "MonitorConfig", "MonitorFilter", "MonitorFilterFactory", "model_report"]
