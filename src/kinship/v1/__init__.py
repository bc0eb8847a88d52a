"""Generated code of the kinship.v1 contracts (protos/kinship/v1/*.proto).

Do not edit the *_pb2* files: run `make protos` to regenerate them.
"""
