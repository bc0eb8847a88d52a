"""The embedder service (kinship.v1.Embedder): image -> faces with boxes, landmarks and embeddings."""
