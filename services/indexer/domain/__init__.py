"""Gallery rules over plain data: records, typed filters, validation. No grpc, no pymilvus."""
