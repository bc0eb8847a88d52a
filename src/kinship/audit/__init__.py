"""The audit trail: one hash-chained event per search, enrolment, deletion and refused call.

- `trail`: the event, its chain hash, the sinks (an append-only file with fsync, JSON
  lines on stdout), `verify` and `query`.
- `checkpoints`: Ed25519-signed checkpoints of the chain, in the trail and in a second
  sink (a file to ship to write-once storage), and `verify_anchored`, which finds a
  re-hashed chain, removed events, a cut-off end and a forged checkpoint.
"""
