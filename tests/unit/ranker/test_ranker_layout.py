"""The ranker's settings and its layering rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kinship.ranker import bootstrap
from kinship.runtime import config
from kinship.runtime.errors import ConfigError

DOMAIN = Path(bootstrap.__file__).parent / "domain"
FORBIDDEN_IN_DOMAIN = {"grpc", "google", "kinship.v1", "pymilvus", "onnxruntime"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(DOMAIN.glob("*.py")), ids=lambda p: p.name)
def test_domain_imports_no_transport_or_adapter(path):
    bad = {m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IN_DOMAIN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_defaults():
    values = config.resolve(bootstrap.settings(), env={})
    assert (values.port, values.embedder_address, values.indexer_address) == (
        50053,
        "127.0.0.1:50051",
        "127.0.0.1:50052",
    )
    assert (values.candidate_k, values.call_timeout_seconds, values.max_photos) == (100, 30.0, 32)


def test_environment_overrides_and_bad_values_are_all_named():
    env = {"KINSHIP_EMBEDDER_ADDRESS": "dns:///embedder:50051", "KINSHIP_RANKER_CANDIDATE_K": "250"}
    values = config.resolve(bootstrap.settings(), env=env)
    assert (values.embedder_address, values.candidate_k) == ("dns:///embedder:50051", 250)
    bad = {
        "KINSHIP_INDEXER_ADDRESS": "indexer",
        "KINSHIP_RANKER_CANDIDATE_K": "5000",
        "KINSHIP_RANKER_CALL_TIMEOUT_SECONDS": "0",
    }
    with pytest.raises(ConfigError) as caught:
        config.resolve(bootstrap.settings(), env=bad)
    for name in bad:
        assert name in str(caught.value)
