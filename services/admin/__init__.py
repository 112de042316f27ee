"""Operator commands of `cohortflow` that run server code in this process, against the
suite's database: `rebuild` and `determinism` (the projector's fold), `console-user` (the
console's accounts). The client commands (services.cli) talk to the services over gRPC only;
`register` adds these to their command tree."""
