"""Decoding and validation of the encoded images that callers send.

Only JPEG and PNG are accepted, recognised by their magic bytes. Before the pixels
are decoded, the file's structure is walked (cheap, no pixel work): this reads the
declared width and height, so that an oversized image is refused before it costs
memory, and it proves the file is complete, because some OpenCV builds decode a
truncated JPEG into a half-grey picture instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kinship.runtime.errors import InvalidArgument

ACCEPTED_FORMATS = "JPEG or PNG"
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM: no length field
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: BGR uint8 pixels (H, W, 3) and the format it came in."""

    pixels: np.ndarray
    format: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def sniff_format(data: bytes) -> str | None:
    """ "jpeg", "png" or None, from the magic bytes."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    return None


def _describe_start(data: bytes) -> str:
    if data.startswith(b"GIF8"):
        return "it looks like a GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "it looks like a WebP"
    return f"its first bytes are {data[:8].hex(' ')}"


class _Malformed(ValueError):
    """Internal: the file's structure is broken; the message says where."""


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walks JPEG markers up to EOI; returns (width, height) from the first start-of-frame."""
    n = len(data)
    pos = 2  # after SOI
    size: tuple[int, int] | None = None
    while True:
        # Like libjpeg, tolerate stray bytes before a marker, then skip fill bytes (FF FF ...).
        pos = data.find(b"\xff", pos)
        if pos < 0:
            raise _Malformed("the file ends before its end-of-image marker (truncated?)")
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise _Malformed("the file ends inside a marker (truncated?)")
        marker = data[pos]
        pos += 1
        if marker == _JPEG_EOI:
            if size is None:
                raise _Malformed("it has no frame header (no image size)")
            return size
        if marker in _JPEG_STANDALONE or marker == 0x00:
            continue
        if pos + 2 > n:
            raise _Malformed("the file ends inside a segment header (truncated?)")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > n:
            raise _Malformed(f"segment 0xFF{marker:02X} at byte {pos - 2} runs past the end of the file (truncated?)")
        if marker in _JPEG_SOF and size is None:
            if length < 7:
                raise _Malformed("its frame header is too short")
            height = int.from_bytes(data[pos + 3 : pos + 5], "big")
            width = int.from_bytes(data[pos + 5 : pos + 7], "big")
            size = (width, height)
        pos += length
        if marker == _JPEG_SOS:
            pos = _skip_entropy_coded(data, pos)


def _skip_entropy_coded(data: bytes, pos: int) -> int:
    """Returns the position of the first real marker after entropy-coded scan data."""
    n = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            raise _Malformed("the file ends inside the compressed image data (truncated?)")
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:  # stuffed byte or restart marker
            pos += 2
        elif following == 0xFF:  # fill byte before a marker
            pos += 1
        else:
            return pos


def _png_size(data: bytes) -> tuple[int, int]:
    """Walks PNG chunks up to IEND; returns (width, height) from IHDR."""
    n = len(data)
    pos = len(PNG_MAGIC)
    size: tuple[int, int] | None = None
    while True:
        if pos + 8 > n:
            raise _Malformed("the file ends before its IEND chunk (truncated?)")
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length  # length, type, data, CRC
        if end > n:
            raise _Malformed(f"chunk {kind!r} at byte {pos} runs past the end of the file (truncated?)")
        if kind == b"IHDR":
            if length < 8:
                raise _Malformed("its IHDR chunk is too short")
            size = (int.from_bytes(data[pos + 8 : pos + 12], "big"), int.from_bytes(data[pos + 12 : pos + 16], "big"))
        elif size is None:
            raise _Malformed("it does not start with an IHDR chunk")
        if kind == b"IEND":
            return size
        pos = end


def _check_pixels(width: int, height: int, max_pixels: int, field: str) -> None:
    if width <= 0 or height <= 0:
        raise InvalidArgument(f"image declares an empty size {width}x{height}; send a real photo", field=field)
    if width * height > max_pixels:
        raise InvalidArgument(
            f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels, more than the limit of "
            f"{max_pixels / 1e6:.1f}; downscale it (faces need far fewer pixels) and send it again",
            field=field,
        )


def require_image(data: bytes, field: str = "image") -> None:
    """Raises InvalidArgument when no image bytes were sent."""
    if not data:
        raise InvalidArgument(f"image is empty: send the bytes of a {ACCEPTED_FORMATS} file", field=field)


def decode_image(data: bytes, *, max_pixels: int, field: str = "image") -> DecodedImage:
    """Validates and decodes JPEG/PNG bytes into BGR pixels; raises InvalidArgument naming `field`.

    EXIF orientation is applied (OpenCV does it for JPEG), so the pixels are the
    photo as a person sees it.
    """
    require_image(data, field)
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidArgument(
            f"image is not a {ACCEPTED_FORMATS} file ({_describe_start(data)}); "
            f"send the file's bytes as they are, in one of those formats",
            field=field,
        )
    try:
        width, height = _jpeg_size(data) if fmt == "jpeg" else _png_size(data)
    except _Malformed as exc:
        raise InvalidArgument(f"image is a damaged {fmt.upper()} file: {exc}", field=field) from exc
    _check_pixels(width, height, max_pixels, field)
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if pixels is None or pixels.size == 0:
        raise InvalidArgument(f"image could not be decoded as {fmt.upper()}: the file is damaged", field=field)
    _check_pixels(int(pixels.shape[1]), int(pixels.shape[0]), max_pixels, field)
    return DecodedImage(pixels=pixels, format=fmt)
