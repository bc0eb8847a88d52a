"""The indexer's ways out of the process: Milvus (Lite file or server) through pymilvus."""
