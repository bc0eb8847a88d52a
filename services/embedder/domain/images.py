"""Decoding and validation of the encoded images that callers send.

JPEG, PNG, WebP and BMP are accepted, recognised by their magic bytes. Before any
pixel is decoded, the encoded size is checked against its limit and the declared width
and height are read from the header (Pillow opens lazily; JPEG and PNG files are
also walked marker by marker, which proves them complete, because libjpeg otherwise
turns a truncated JPEG into a half-grey picture), so a decompression bomb is refused
before it costs memory. Pillow then decodes; every colour form becomes BGR uint8:
greyscale, palette and CMYK are converted, 16-bit samples are scaled to 8 bits, an
alpha channel is composited onto white, and EXIF orientation is applied so the pixels
are the photo as a person sees it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from struct import error as struct_error

import numpy as np
from PIL import Image, ImageOps

from kinship.runtime.errors import InvalidArgument

ACCEPTED_FORMATS = "JPEG, PNG, WebP or BMP"
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BMP_MAGIC = b"BM"
#: Pillow's own names of the accepted formats, by our names.
_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP"}
#: Default limit on the encoded size (the server's message limit also bounds it).
DEFAULT_MAX_BYTES = 15 * 1024 * 1024

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
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(BMP_MAGIC) and len(data) >= 26:
        return "bmp"
    return None


def _describe_start(data: bytes) -> str:
    if data.startswith(b"GIF8"):
        return "it looks like a GIF"
    if data.startswith(b"II*\x00") or data.startswith(b"MM\x00*"):
        return "it looks like a TIFF"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "it looks like a HEIC/AVIF"
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


def decode_image(
    data: bytes, *, max_pixels: int, field: str = "image", max_bytes: int = DEFAULT_MAX_BYTES
) -> DecodedImage:
    """Validates and decodes JPEG/PNG/WebP/BMP bytes into BGR pixels; raises InvalidArgument naming `field`."""
    require_image(data, field)
    if len(data) > max_bytes:
        raise InvalidArgument(
            f"image is {len(data) / 2**20:.1f} MiB, more than the limit of {max_bytes / 2**20:.1f} MiB; "
            "send a smaller file (re-encode or downscale it)",
            field=field,
        )
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidArgument(
            f"image is not a {ACCEPTED_FORMATS} file ({_describe_start(data)}); "
            f"send the file's bytes as they are, in one of those formats",
            field=field,
        )
    name = fmt.upper() if fmt != "webp" else "WebP"
    if fmt in ("jpeg", "png"):
        try:
            width, height = _jpeg_size(data) if fmt == "jpeg" else _png_size(data)
        except _Malformed as exc:
            raise InvalidArgument(f"image is a damaged {name} file: {exc}", field=field) from exc
        _check_pixels(width, height, max_pixels, field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[fmt]])
            _check_pixels(image.width, image.height, max_pixels, field)  # header only: nothing decoded yet
            image.load()
            pixels = _to_bgr(ImageOps.exif_transpose(image))
    except InvalidArgument:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidArgument(
            f"image is refused as a decompression bomb ({exc}); downscale it and send it again", field=field
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct_error, MemoryError) as exc:
        raise InvalidArgument(
            f"image could not be decoded as {name}: the file is damaged or truncated ({exc}); send the complete file",
            field=field,
        ) from exc
    if pixels.size == 0:
        raise InvalidArgument(f"image could not be decoded as {name}: the file is damaged", field=field)
    _check_pixels(int(pixels.shape[1]), int(pixels.shape[0]), max_pixels, field)
    return DecodedImage(pixels=pixels, format=fmt)


def _to_bgr(image: Image.Image) -> np.ndarray:
    """BGR uint8 (H, W, 3) pixels of a loaded Pillow image of any mode."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        # 16-bit (and 32-bit) greyscale: scale the 16-bit range to 8 bits; F is taken as 0..255.
        values = np.asarray(image, dtype=np.float64)
        if mode != "F":
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, np.newaxis], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])
