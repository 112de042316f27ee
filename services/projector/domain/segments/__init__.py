"""Segments: a definition language over users, and its live, incremental evaluation."""
