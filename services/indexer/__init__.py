"""The indexer: the gallery of enrolled face embeddings, kept in Milvus (kinship.v1.Indexer)."""
