"""turnout's gateway process: the listener and data path, the admin API and the CLI."""

from gateway.core.native import prefer_sources

# Before any data-path module is imported: an edited source must run, not its older compiled build.
SOURCE_REASON = prefer_sources()
