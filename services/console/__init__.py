"""The console: a web UI for marketers and analysts over the services' gRPC APIs."""
