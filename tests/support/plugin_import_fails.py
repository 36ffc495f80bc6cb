"""A plugin module whose own code fails while it is imported
(`plugin: tests.support.plugin_import_fails:F`)."""

from __future__ import annotations

raise RuntimeError("this plugin module needs PLUGIN_SETTINGS, which is not set")
