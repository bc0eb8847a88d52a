"""The shared runtime of the three services.

- `config`: settings from flags and environment, validated at start-up;
- `logs`: structlog JSON logs with the request id on every line of a call;
- `errors` / `grpc_errors`: domain errors and their gRPC status codes and details;
- `interceptors`: request id, log context, metrics, error mapping;
- `server`: start-up, health, reflection, graceful shutdown; `ServerThread` for tests;
- `clients`: channels and calls to the suite's own services;
- `metrics`: Prometheus counters and histograms.
"""
