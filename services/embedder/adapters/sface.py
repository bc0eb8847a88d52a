"""SFace face recognizer (OpenCV Zoo, 2021dec) on onnxruntime.

Input `data` [1, 3, 112, 112]: an aligned face, RGB, float32 0..255 (the graph
normalises itself); output `fc1` [1, 128]. The batch is fixed at 1, so faces are
embedded one at a time.
"""

from __future__ import annotations

import numpy as np

from kinship.embedder.adapters.onnx_models import OnnxSession

FACE_SIZE = 112


def face_blob(aligned_bgr: np.ndarray) -> np.ndarray:
    """An aligned 112x112 BGR uint8 face as the (1, 3, 112, 112) RGB float32 0..255 batch SFace takes."""
    if aligned_bgr.shape != (FACE_SIZE, FACE_SIZE, 3):
        raise ValueError(f"the recognizer needs a {FACE_SIZE}x{FACE_SIZE} BGR face, got shape {aligned_bgr.shape}")
    return aligned_bgr[:, :, ::-1].transpose(2, 0, 1)[np.newaxis].astype(np.float32)


class SFaceRecognizer:
    """FaceRecognizer over an SFace session."""

    def __init__(self, session: OnnxSession, *, dimension: int, input_name: str = "data", output_name: str = "fc1"):
        self._session = session
        self.dimension = dimension
        self._input_name = input_name
        self._output_name = output_name

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        (output,) = self._session.run([self._output_name], {self._input_name: face_blob(aligned_bgr)})
        return np.asarray(output, dtype=np.float32).reshape(-1)
