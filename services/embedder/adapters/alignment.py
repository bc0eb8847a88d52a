"""5-point similarity alignment to the ArcFace 112x112 template (insightface's face_align)."""

from __future__ import annotations

import warnings

import numpy as np
from insightface.utils import face_align

# insightface 2.1 calls scikit-image's SimilarityTransform.estimate, deprecated since
# scikit-image 0.26 (removed in 2.2: keep scikit-image below 2.2). The warning, once
# per process, is nothing an operator can act on.
warnings.filterwarnings("ignore", message=r"`estimate` is deprecated", category=FutureWarning)


class ArcFaceAligner:
    """FaceAligner: warps the face so its 5 landmarks meet insightface's arcface template."""

    def __init__(self, image_size: int = 112):
        self._size = image_size

    def align(self, image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        points = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
        return face_align.norm_crop(image_bgr, points, image_size=self._size)
