"""The console's HTTP edge: Starlette routes, server-rendered pages, JSON for the builder."""
