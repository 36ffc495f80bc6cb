"""One locustfile per scenario; `common` holds the glue they share (options, the traffic observer)."""
