"""Recognizers on onnxruntime: aligned 112x112 faces in, one embedding per face out, all faces in one run.

SFace (the default pack) takes RGB float32 0..255 as it is; insightface-style packs
say their normalisation in the manifest (mean and std per channel, RGB or BGR).
The recognizer's graph is prepared with a dynamic batch at load
(`onnx_models.make_batch_dynamic`), so `embed_batch` runs every face of a photo, or of
a micro-batch of requests, in one session call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kinship.embedder.adapters.onnx_models import OnnxSession

FACE_SIZE = 112


def face_blob(aligned_bgr: np.ndarray) -> np.ndarray:
    """An aligned 112x112 BGR uint8 face as the (1, 3, 112, 112) RGB float32 0..255 batch SFace takes."""
    return faces_blob([aligned_bgr])


def faces_blob(
    faces_bgr: Sequence[np.ndarray],
    *,
    rgb: bool = True,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """(N, 3, 112, 112) float32 from N aligned BGR uint8 faces: channel order, then (x - mean) / std."""
    for face in faces_bgr:
        if face.shape != (FACE_SIZE, FACE_SIZE, 3):
            raise ValueError(f"the recognizer needs a {FACE_SIZE}x{FACE_SIZE} BGR face, got shape {face.shape}")
    batch = np.stack(faces_bgr).astype(np.float32)
    if rgb:
        batch = batch[..., ::-1]
    if any(mean) or any(s != 1.0 for s in std):
        batch = (batch - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


class OnnxRecognizer:
    """FaceRecognizer over an onnxruntime session whose first dimension is the batch."""

    def __init__(
        self,
        session: OnnxSession,
        *,
        dimension: int,
        input_name: str,
        output_name: str,
        rgb: bool = True,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
    ):
        self._session = session
        self.dimension = dimension
        self._input_name = input_name
        self._output_name = output_name
        self._rgb = rgb
        self._mean = tuple(float(v) for v in mean)
        self._std = tuple(float(v) for v in std)

    def blob(self, faces_bgr: Sequence[np.ndarray]) -> np.ndarray:
        return faces_blob(faces_bgr, rgb=self._rgb, mean=self._mean, std=self._std)

    def run_blob(self, blob: np.ndarray) -> np.ndarray:
        """The raw (N, dimension) output for a prepared (N, 3, 112, 112) blob (what benchmarks time)."""
        (output,) = self._session.run([self._output_name], {self._input_name: blob})
        return np.asarray(output, dtype=np.float32).reshape(blob.shape[0], -1)

    def embed_batch(self, faces_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Raw embeddings (N, dimension) of N aligned faces, in one session call."""
        if not faces_bgr:
            return np.zeros((0, self.dimension), np.float32)
        return self.run_blob(self.blob(faces_bgr))

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        return self.embed_batch([aligned_bgr])[0]


class SFaceRecognizer(OnnxRecognizer):
    """SFace: RGB float32 0..255, no normalisation; input `data`, output `fc1`."""

    def __init__(self, session: OnnxSession, *, dimension: int, input_name: str = "data", output_name: str = "fc1"):
        super().__init__(session, dimension=dimension, input_name=input_name, output_name=output_name)
