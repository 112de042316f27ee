"""The `cohortflow` command line: send events, read profiles, simulate a population."""
