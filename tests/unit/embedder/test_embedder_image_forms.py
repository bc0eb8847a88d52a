"""Every accepted format and colour form decodes to BGR uint8 the right way up; hostile bytes get INVALID_ARGUMENT.

The property-based part (hypothesis) throws thousands of random, truncated, mutated and
oversized inputs at the decoder: each must decode or be refused with InvalidArgument
saying what to fix, never another exception.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kinship.embedder.domain.images import decode_image
from kinship.runtime.errors import InvalidArgument

LIMIT = 10_000_000


def photo() -> np.ndarray:
    """A 48x64 RGB picture whose top-left quarter is red and the rest blue-ish gradient."""
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 2] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :]
    rgb[:24, :32] = (255, 0, 0)
    return rgb


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_each_format_decodes_to_bgr(fmt):
    data = encoded(Image.fromarray(photo()), fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    decoded = decode_image(data, max_pixels=LIMIT)
    assert decoded.pixels.shape == (48, 64, 3) and decoded.pixels.dtype == np.uint8
    b, g, r = decoded.pixels[5, 5].astype(int)
    assert r > 200 and g < 60 and b < 60, "red stays red: channels are BGR"


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "RGBA", "LA", "I;16"])
def test_colour_forms_become_three_channels(mode):
    base = Image.fromarray(photo())
    if mode == "I;16":
        grey = (np.asarray(base.convert("L"), np.uint16) * 257).astype(np.uint16)
        image = Image.fromarray(grey)
        fmt = "PNG"
    else:
        image = base.convert(mode)
        fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(encoded(image, fmt), max_pixels=LIMIT)
    assert decoded.pixels.shape == (48, 64, 3) and decoded.pixels.dtype == np.uint8
    if mode == "I;16":
        expected = np.asarray(base.convert("L"))
        assert np.abs(decoded.pixels[..., 0].astype(int) - expected).max() <= 1, "16-bit grey scaled to 8 bits"


def test_transparent_pixels_become_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 10
    rgba[:4, ..., 3] = 255  # top half opaque dark, bottom half transparent
    decoded = decode_image(encoded(Image.fromarray(rgba, "RGBA"), "PNG"), max_pixels=LIMIT)
    assert decoded.pixels[0, 0].tolist() == [10, 10, 10] and decoded.pixels[7, 7].tolist() == [255, 255, 255]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_honoured(fmt):
    image = Image.fromarray(photo())  # 64 wide, 48 high, red at top left
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    decoded = decode_image(encoded(image, fmt, exif=exif), max_pixels=LIMIT)
    assert decoded.pixels.shape == (64, 48, 3)
    b, g, r = decoded.pixels[5, 48 - 6].astype(int)  # red now at the top right
    assert r > 200 and b < 80


def test_encoded_size_limit_is_checked_before_anything_else():
    with pytest.raises(InvalidArgument, match="MiB, more than the limit"):
        decode_image(b"\xff\xd8\xff" + bytes(2048), max_pixels=LIMIT, max_bytes=1024)


def bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40, 0, 0, 14 + 40) + info


def webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little")
    body += (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


@pytest.mark.parametrize("data", [bmp_header(60_000, 60_000), webp_vp8x(50_000, 50_000)], ids=["bmp", "webp"])
def test_bombs_in_every_format_are_refused_from_the_header(data):
    with pytest.raises(InvalidArgument, match="megapixels|decompression bomb"):
        decode_image(data, max_pixels=LIMIT)


def png_bomb() -> bytes:
    """A real 20000x20000 grey PNG that compresses to a few hundred KiB."""
    raw = zlib.compress(b"\x00" * (20_001 * 2000), 9)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_png_bomb_is_refused_without_decoding():
    with pytest.raises(InvalidArgument, match="20000x20000"):
        decode_image(png_bomb(), max_pixels=LIMIT)


SAMPLES = [encoded(Image.fromarray(photo()), fmt) for fmt in ("JPEG", "PNG", "WEBP", "BMP")]


def check(data: bytes) -> None:
    try:
        decoded = decode_image(data, max_pixels=1_000_000, max_bytes=256 * 1024)
    except InvalidArgument as exc:
        assert exc.message and exc.status_name == "INVALID_ARGUMENT"
        return
    assert decoded.pixels.ndim == 3 and decoded.pixels.shape[2] == 3 and decoded.pixels.dtype == np.uint8


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_decode_or_are_refused(data):
    check(data)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    st.integers(0, 10_000),
)
def test_mutated_and_truncated_images_decode_or_are_refused(sample, flips, cut):
    data = bytearray(sample)
    for position, value in flips:
        data[position % len(data)] = value
    check(bytes(data[: max(1, len(data) - cut % len(data))]))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["png", "bmp", "webp"]), st.integers(1, 70_000), st.integers(1, 70_000))
def test_declared_sizes_up_to_huge_are_refused_or_decoded_never_a_crash(fmt, width, height):
    if fmt == "png":
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        body = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        data = b"\x89PNG\r\n\x1a\n" + body + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    elif fmt == "bmp":
        data = bmp_header(width, height) + bytes(64)
    else:
        data = webp_vp8x(min(width, 2**24), min(height, 2**24))
    check(data)
