"""Where endpoints come from: addresses in config (`static`) and periodic DNS resolution (`dns`)."""
