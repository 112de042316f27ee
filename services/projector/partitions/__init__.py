"""Partitioned projection: which worker folds which partition, and what partitions tell
one another (hand-overs, app-wide facts)."""
