"""Face quality: detection score times the sharpness of the aligned crop (numpy only, no model)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kinship.embedder.domain.pipeline import FacePipeline
from kinship.embedder.domain.quality import SHARPNESS_REFERENCE, face_quality, laplacian_variance, sharpness_factor
from tests.conftest import sample_image
from tests.unit.embedder.embedder_fakes import FakeDetector, FixedCropAligner, RecordingRecognizer, detection


@pytest.fixture(scope="module")
def face_crop() -> np.ndarray:
    """insightface's Tom_Hanks_54745.png: a real face photo of 112x112, the size of an aligned crop."""
    pixels = cv2.imdecode(np.frombuffer(sample_image("Tom_Hanks_54745.png"), np.uint8), cv2.IMREAD_COLOR)
    assert pixels.shape == (112, 112, 3)
    return pixels


def quality_through_the_pipeline(crop: np.ndarray, score: float) -> float:
    pipeline = FacePipeline(FakeDetector([detection(score)]), FixedCropAligner(crop), RecordingRecognizer())
    (face,) = pipeline.run(np.zeros((200, 200, 3), np.uint8))
    return face.quality


def test_a_blurred_face_gets_a_clearly_lower_quality_than_the_sharp_one(face_crop):
    blurred = cv2.GaussianBlur(face_crop, (0, 0), sigmaX=1.5)
    sharp_quality = quality_through_the_pipeline(face_crop, 0.9)
    blurred_quality = quality_through_the_pipeline(blurred, 0.9)
    assert sharp_quality == pytest.approx(0.9)  # a sharp face keeps its detection score
    assert blurred_quality < 0.5 * sharp_quality, (sharp_quality, blurred_quality)
    more_blurred = quality_through_the_pipeline(cv2.GaussianBlur(face_crop, (0, 0), sigmaX=3), 0.9)
    assert more_blurred < blurred_quality


def test_quality_scales_with_the_detection_score(face_crop):
    assert quality_through_the_pipeline(face_crop, 0.6) == pytest.approx(0.6)
    assert face_quality(1.7, face_crop) == 1.0 and face_quality(-0.2, face_crop) == 0.0  # clipped to [0, 1]


def test_a_flat_or_tiny_crop_has_no_sharpness():
    assert laplacian_variance(np.full((112, 112, 3), 90, np.uint8)) == 0.0
    assert sharpness_factor(np.full((112, 112, 3), 90, np.uint8)) == 0.0
    assert laplacian_variance(np.zeros((3, 3, 3), np.uint8)) == 0.0


def test_sharpness_is_the_laplacian_variance_of_the_inner_face_over_the_reference():
    # A checkerboard of 0/255 in the inner face: every inner Laplacian is +-4*255, so the variance is (4*255)^2.
    crop = np.zeros((112, 112, 3), np.uint8)
    rows, cols = np.indices((112, 112))
    crop[(rows + cols) % 2 == 1] = 255
    assert laplacian_variance(crop) == pytest.approx((4 * 255) ** 2, rel=1e-3)
    assert sharpness_factor(crop) == 1.0
    # Stripes outside the inner face (the border alignment may add) do not count.
    framed = np.full((112, 112, 3), 100, np.uint8)
    framed[:10] = 0
    framed[:, -8:] = 255
    assert laplacian_variance(framed) == 0.0
    # Below the reference the factor is the variance over the reference (iid noise: variance 20 sigma^2).
    rng = np.random.default_rng(0)
    noisy = np.clip(100 + rng.normal(scale=1.5, size=(112, 112, 1)), 0, 255).repeat(3, axis=2).astype(np.uint8)
    expected = laplacian_variance(noisy) / SHARPNESS_REFERENCE
    assert 0 < expected < 1 and sharpness_factor(noisy) == pytest.approx(expected)
