"""The Segment-compatible HTTP tracking API of ingest (`POST /v1/track`, `/v1/batch`, ...).

An edge like the gRPC one: it reads a request (auth, size, encoding, JSON), turns each
Segment call into ingest messages through the shared mapping (services.common.formats.segment),
judges and builds them with ingest's domain, and appends them with the same micro-batching
appender, so validation, idempotency, tenancy and durability are the gRPC API's.
"""
