"""What applications (training, bench, CLI) may use of the embedder: its model pack and the parts
of its pipeline that training and benchmarks run outside the service, so they measure what is served.

Everything else in kinship.embedder is the service's own (the import contract in pyproject.toml).
"""

from __future__ import annotations

from kinship.embedder.adapters.alignment import ArcFaceAligner
from kinship.embedder.adapters.kinship_model import load_kinship_model
from kinship.embedder.adapters.model_pack import (
    DEFAULT_PACK,
    LoadedPack,
    RuntimeOptions,
    load_pack,
    pack_folder,
    read_verified,
    recognizer_bytes,
)
from kinship.embedder.adapters.onnx_models import create_session, drop_unused
from kinship.embedder.adapters.sface import FACE_SIZE, SFaceRecognizer
from kinship.embedder.bootstrap import available_cores
from kinship.embedder.domain.images import decode_image
from kinship.embedder.domain.pipeline import Detection

__all__ = [
    "DEFAULT_PACK",
    "FACE_SIZE",
    "ArcFaceAligner",
    "Detection",
    "LoadedPack",
    "RuntimeOptions",
    "SFaceRecognizer",
    "available_cores",
    "create_session",
    "decode_image",
    "drop_unused",
    "load_kinship_model",
    "load_pack",
    "pack_folder",
    "read_verified",
    "recognizer_bytes",
]
