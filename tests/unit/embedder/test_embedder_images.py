"""Image validation and decoding: what is refused, with which message, and what decodes."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from kinship.embedder.domain.images import decode_image, sniff_format
from kinship.runtime.errors import InvalidArgument

LIMIT = 40_000_000


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def refused(data: bytes, max_pixels: int = LIMIT) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        decode_image(data, max_pixels=max_pixels)
    assert caught.value.violations[0].field == "image"
    return caught.value


def test_jpeg_and_png_decode_to_bgr_with_their_size(photo):
    for ext, fmt in ((".jpg", "jpeg"), (".png", "png")):
        decoded = decode_image(encode(ext, photo), max_pixels=LIMIT)
        assert decoded.format == fmt
        assert (decoded.width, decoded.height) == (64, 48)
        assert decoded.pixels.shape == (48, 64, 3) and decoded.pixels.dtype == np.uint8
    # PNG is lossless: the very same pixels come back.
    assert np.array_equal(decode_image(encode(".png", photo), max_pixels=LIMIT).pixels, photo)


@pytest.mark.parametrize(
    "params",
    [[cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 1], [cv2.IMWRITE_JPEG_QUALITY, 100]],
    ids=["progressive", "restart-markers", "quality-100"],
)
def test_jpeg_variants_pass_the_structure_walk(photo, params):
    ok, buf = cv2.imencode(".jpg", photo, params)
    assert ok
    data = buf.tobytes()
    assert decode_image(data, max_pixels=LIMIT).width == 64
    with pytest.raises(InvalidArgument, match="truncated"):
        decode_image(data[: len(data) - 40], max_pixels=LIMIT)


def test_grey_and_alpha_png_become_three_channels(photo):
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    rgba = cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA)
    for image in (grey, rgba):
        assert decode_image(encode(".png", image), max_pixels=LIMIT).pixels.shape == (48, 64, 3)


def test_empty_image_is_refused_with_what_to_send():
    assert "image is empty" in refused(b"").message


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "GIF"),
        (b"II*\x00\x08\x00\x00\x00", "TIFF"),
        (b"not an image at all", "6e 6f 74"),
    ],
)
def test_other_formats_are_refused_naming_the_accepted_ones(data, hint):
    message = refused(data).message
    assert "JPEG, PNG, WebP or BMP" in message and hint in message


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated_jpeg_is_refused(photo, fraction):
    data = encode(".jpg", photo)
    message = refused(data[: int(len(data) * fraction)]).message
    assert "damaged JPEG" in message and "truncated" in message


def test_jpeg_with_bytes_after_the_end_marker_is_accepted(photo):
    # Some cameras append data after the end-of-image marker; libjpeg ignores it.
    data = encode(".jpg", photo) + b"trailing data"
    assert decode_image(data, max_pixels=LIMIT).width == 64


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_png_is_refused(photo, fraction):
    data = encode(".png", photo)
    assert "damaged PNG" in refused(data[: int(len(data) * fraction)]).message


def test_corrupt_jpeg_body_is_refused_even_when_its_structure_is_whole():
    # A frame header and an end marker, but no tables or scan: nothing to decode.
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 16, 16, 1) + b"\x01\x11\x00"
    data = b"\xff\xd8" + sof + b"\xff\xd9"
    assert "could not be decoded" in refused(data).message


def test_oversized_image_is_refused_from_its_header_before_decoding():
    # A PNG that declares 100000 x 100000 pixels but holds none: refused on the header alone.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")
    message = refused(data).message
    assert "100000x100000" in message and "megapixels" in message and "downscale" in message


def test_pixel_limit_applies_to_real_images(photo):
    message = refused(encode(".jpg", photo), max_pixels=64 * 48 - 1).message
    assert "64x48" in message
    assert decode_image(encode(".jpg", photo), max_pixels=64 * 48).width == 64


def test_sniff_format():
    assert sniff_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_format(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_format(b"\xff\xd8") is None
    assert sniff_format(b"BM....") is None
