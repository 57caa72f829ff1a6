"""The one way every path (training, evaluation, chat, serving, visualisation) turns a file, URL or bytes into an
RGB image, with one error type that says which image failed and why."""

from __future__ import annotations

import base64
import binascii
import io
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .paths import missing_reason

ImageSource = Union[str, os.PathLike, bytes, Image.Image]
REMOTE_PREFIXES = ("http://", "https://")


class ImageLoadError(ValueError):
    """An image that cannot be read; the message names it and says what to do."""


class ImageMissing(ImageLoadError):
    """An image file that is not there (or a link that leads nowhere), rather than one that is there but bad."""


def _samples_to_8_bits(image: Image.Image) -> Image.Image:
    """An ``I;16*`` / ``I`` / ``F`` image as 8-bit ``L``, rounded: 16-bit samples scaled by 255/65535; ``I`` samples
    as 8-bit when all are within 0..255, as 16-bit within 0..65535, else scaled by their maximum; ``F`` samples as
    fractions when all are within 0..1, else as 0..255 values (clipped)."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16"):
        scale = 255 / 65535
    elif image.mode == "F":
        scale = 255.0 if top <= 1.0 else 1.0
    else:
        scale = 1.0 if top <= 255 else 255 / 65535 if top <= 65535 else 255 / top
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB as a viewer shows the image: EXIF rotation applied; 16-bit, 32-bit and float samples scaled to 8 bits
    (PIL's own ``convert("RGB")`` clips them, which turns a 16-bit PNG white); transparency (alpha, premultiplied
    alpha, a palette's transparent entries or RGBA palette) composited over white; CMYK, YCbCr, LAB and HSV through
    PIL's conversions to RGB."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _samples_to_8_bits(image)
    if image.has_transparency_data:
        rgba = (image.convert("LA") if image.mode == "La" else image).convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def check_pixel_bound(size: tuple[int, int], name: str, max_pixels: Optional[int]) -> None:
    """Refuse an image of more than ``max_pixels`` pixels (None: no bound) before it is decoded."""
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            f"{name} is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}; downscale it "
            "(or start the server with a larger --max-image-pixels)."
        )


def decode_image_bytes(data: bytes, name: str, max_pixels: Optional[int] = None) -> Image.Image:
    """Decode ``data`` completely (so truncation shows here) into RGB; more than ``max_pixels`` pixels is refused
    from the header, before decoding."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            check_pixel_bound(opened.size, name, max_pixels)
            opened.load()
            return to_rgb(opened)
    except Image.DecompressionBombError as err:
        raise ImageLoadError(
            f"{name} has more pixels than PIL allows (its guard against decompression bombs: {err}); downscale the "
            "image, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
        ) from None
    except UnidentifiedImageError:
        raise ImageLoadError(
            f"{name} cannot be decoded: {Path(name).name} is not a readable image (its format is not recognised); it "
            "is corrupt or truncated, or not an image file. Re-create the file."
        ) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageLoadError(f"{name} cannot be decoded ({err}); it is corrupt or truncated. Re-create the file.") from err


def decode_base64_image(data: str, name: str = "base64 image", max_pixels: Optional[int] = None) -> Image.Image:
    """A base64 string (or a ``data:image/...;base64,`` URL) → RGB."""
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if ";base64" not in header:
            raise ImageLoadError(f"{name}: only base64 data URLs are supported (data:image/png;base64,...).")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageLoadError(f"{name}: invalid base64 image data ({err}).") from err
    return decode_image_bytes(raw, name, max_pixels)


def _read_file(path: Path) -> bytes:
    reason = missing_reason(path)
    if reason:
        missing = not os.path.exists(path)  # not there, a broken link or a link loop (vs a folder, no permission)
        raise (ImageMissing if missing else ImageLoadError)(
            f"image {path} {reason}; check the image folder and the image path."
        )
    try:
        return path.read_bytes()
    except OSError as err:
        raise ImageLoadError(f"cannot read image file {path}: {err.strerror or err}.") from err


def _download(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ImageLoadError(
            f"cannot download image {url}: {reason}. Without network access, pass a local file instead."
        ) from err


def load_image(source: ImageSource, folder: str | os.PathLike | None = None, allow_remote: bool = True,
               timeout: float = 10.0, max_pixels: Optional[int] = None) -> Image.Image:
    """An RGB image from a path (relative paths under ``folder``), an http(s) URL, a data URL, raw bytes or a PIL
    image; every failure is an ``ImageLoadError`` naming the source. ``max_pixels`` bounds width × height."""
    if isinstance(source, Image.Image):
        check_pixel_bound(source.size, "the given image", max_pixels)
        return to_rgb(source)
    if isinstance(source, bytes):
        return decode_image_bytes(source, "the given image bytes", max_pixels)
    text = str(source)
    if text.startswith("data:"):
        return decode_base64_image(text, "data URL image", max_pixels)
    if text.startswith(REMOTE_PREFIXES):
        if not allow_remote:
            raise ImageLoadError(f"remote image {text[:200]} refused: remote images are not allowed here.")
        return decode_image_bytes(_download(text, timeout), text, max_pixels)
    if text.startswith("file://"):
        text = text[len("file://"):]
    path = Path(text).expanduser()
    if folder and not path.is_absolute():
        path = Path(folder) / path
    return decode_image_bytes(_read_file(path), str(path), max_pixels)
