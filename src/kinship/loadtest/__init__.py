"""`kinship loadtest` and `kinship soak`: a ghz-compatible load generator that knows the suite.

- `targets`: `SERVICE/METHOD` -> message classes (generated contracts, else server reflection);
- `inputs`: request bodies from JSON, real photos and families, or synthetic data;
- `engine`: closed loop (`--concurrency`) and open loop (`--rps`, timed from each call's due time) on grpc.aio;
- `recorder`: HDR histograms per call and per status, counts per status and error, time windows;
- `report`: summary, ghz's JSON fields, CSV, Prometheus text;
- `processes`: resident memory of the services under test (for the soak);
- `cli`: the two commands.
"""
