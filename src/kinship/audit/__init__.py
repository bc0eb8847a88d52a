"""The audit trail: one hash-chained event per search, enrolment, deletion and refused call.

- `trail`: the event, its chain hash, the sinks (an append-only file with fsync, JSON
  lines on stdout), `verify` and `query`.
"""
