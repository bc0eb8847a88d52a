"""The .proto contracts: generated code is current, and everything is documented."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "src" / "kinship" / "v1"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_generated_code_matches_the_protos(tmp_path: Path) -> None:
    gen = _load_generator()
    written = gen.generate(tmp_path)
    assert written, "protoc produced nothing"
    fresh = {p.name: p.read_bytes() for p in written}
    committed = {p.name: p.read_bytes() for p in GENERATED.iterdir() if "_pb2" in p.name}
    assert sorted(fresh) == sorted(committed), "generated file set differs: run `make protos` and commit"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"generated code is stale for {stale}: run `make protos` and commit the result"


def _descriptor_set(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    import grpc_tools
    from grpc_tools import protoc

    out = tmp_path / "contracts.pb"
    files = [str(p.relative_to(ROOT / "protos")) for p in sorted((ROOT / "protos" / "kinship" / "v1").glob("*.proto"))]
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'protos'}",
            f"-I{well_known}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *files,
        ]
    )
    assert code == 0
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(out.read_bytes())
    return fds


def _undocumented(fds: descriptor_pb2.FileDescriptorSet) -> list[str]:
    """Paths of every message, field, enum, value, service and rpc without a leading comment."""
    missing: list[str] = []
    for f in fds.file:
        documented = {tuple(loc.path) for loc in f.source_code_info.location if loc.leading_comments.strip()}

        def check(path: tuple[int, ...], name: str, documented=documented, file_name=f.name) -> None:
            if path not in documented:
                missing.append(f"{file_name}: {name}")

        def walk_message(msg, path, prefix):
            check(path, prefix + msg.name)
            for i, fld in enumerate(msg.field):
                check(path + (2, i), f"{prefix}{msg.name}.{fld.name}")
            for i, nested in enumerate(msg.nested_type):
                if nested.options.map_entry:
                    continue  # protoc's synthetic type of a map<,> field: the field itself is documented
                walk_message(nested, path + (3, i), f"{prefix}{msg.name}.")
            for i, enum in enumerate(msg.enum_type):
                walk_enum(enum, path + (4, i), f"{prefix}{msg.name}.")

        def walk_enum(enum, path, prefix):
            check(path, prefix + enum.name)
            for i, value in enumerate(enum.value):
                check(path + (2, i), f"{prefix}{enum.name}.{value.name}")

        for i, msg in enumerate(f.message_type):
            walk_message(msg, (4, i), "")
        for i, enum in enumerate(f.enum_type):
            walk_enum(enum, (5, i), "")
        for i, svc in enumerate(f.service):
            check((6, i), svc.name)
            for j, rpc in enumerate(svc.method):
                check((6, i, 2, j), f"{svc.name}.{rpc.name}")
    return missing


def test_every_message_field_and_rpc_is_documented(tmp_path: Path) -> None:
    fds = _descriptor_set(tmp_path)
    assert {f.package for f in fds.file} == {"kinship.v1"}
    missing = _undocumented(fds)
    assert not missing, "undocumented in the .proto files:\n" + "\n".join(missing)


def test_the_documentation_check_catches_a_missing_comment(tmp_path: Path) -> None:
    # Guard against a check that cannot fail: strip one comment and expect it to be found.
    fds = _descriptor_set(tmp_path)
    f = next(f for f in fds.file if f.name.endswith("ranker.proto"))
    kept = [loc for loc in f.source_code_info.location if tuple(loc.path) != (6, 0, 2, 0)]
    del f.source_code_info.location[:]
    f.source_code_info.location.extend(kept)
    assert any("KinshipRanker.FindRelatives" in m for m in _undocumented(fds))


def test_service_full_names_are_the_contract() -> None:
    from kinship.v1 import embedder_pb2, indexer_pb2, ranker_pb2

    names = {
        embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name,
        indexer_pb2.DESCRIPTOR.services_by_name["Indexer"].full_name,
        ranker_pb2.DESCRIPTOR.services_by_name["KinshipRanker"].full_name,
    }
    assert names == {"kinship.v1.Embedder", "kinship.v1.Indexer", "kinship.v1.KinshipRanker"}


@pytest.mark.parametrize("module", ["common", "embedder", "indexer", "ranker"])
def test_generated_modules_import_on_their_own(module: str) -> None:
    # A fresh interpreter: catches imports that only work because another module loaded first.
    result = subprocess.run(
        [sys.executable, "-c", f"import kinship.v1.{module}_pb2_grpc"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_relation_values_only_grow() -> None:
    # kinship.v1 only grows: the first values keep their numbers, grandparents are added after them.
    from kinship.v1 import common_pb2

    values = {v.name: v.number for v in common_pb2.Relation.DESCRIPTOR.values}
    assert values == {
        "RELATION_UNSPECIFIED": 0,
        "RELATION_FATHER": 1,
        "RELATION_MOTHER": 2,
        "RELATION_SIBLING": 3,
        "RELATION_SELF": 4,
        "RELATION_BROTHER": 5,
        "RELATION_SISTER": 6,
        "RELATION_GRANDFATHER": 7,
        "RELATION_GRANDMOTHER": 8,
    }
