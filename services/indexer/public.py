"""What applications (kinship bench index) may use of the indexer: how its Milvus collections are
named, indexed and filtered, to load and search a gallery directly beside the service.

Everything else in kinship.indexer is the service's own (the import contract in pyproject.toml).
"""

from __future__ import annotations

from kinship.indexer.adapters.milvus_gallery import HIT_FIELDS, VectorIndex, collection_name, tenant_expression

__all__ = ["HIT_FIELDS", "VectorIndex", "collection_name", "tenant_expression"]
