"""Regenerate the Python code of the .proto contracts.

    python scripts/gen_protos.py            # writes src/kinship/v1/*_pb2*.py(i)
    python scripts/gen_protos.py --out DIR  # writes DIR/kinship/v1/... (used by the drift test)

The proto root is protos/, so `kinship/v1/x.proto` becomes the importable module
`kinship.v1.x_pb2`: generated imports (`from kinship.v1 import common_pb2`) resolve
inside our own `kinship` package without rewriting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "src"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "kinship" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Runs protoc (from grpcio-tools) over every contract; returns the files written."""
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    target = out_dir / "kinship" / "v1"
    return sorted(p for p in target.iterdir() if p.name.endswith((".py", ".pyi")) and "_pb2" in p.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output root (default: src/)")
    args = parser.parse_args(argv)
    written = generate(args.out)
    for path in written:
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
