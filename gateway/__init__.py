"""turnout's gateway process: the listener and data path, the admin API and the CLI."""
