"""Endpoint health: passive outlier detection (`outlier`) and active HTTP checks (`active`)."""
