"""The segment definition language, shared by the projector (which stores, builds and
evaluates definitions) and its clients (the CLI and the console check files and forms
before sending them): `definition` is the entry point."""
