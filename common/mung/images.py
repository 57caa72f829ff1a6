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

from PIL import Image, ImageOps, UnidentifiedImageError

ImageSource = Union[str, os.PathLike, bytes, Image.Image]
REMOTE_PREFIXES = ("http://", "https://")


class ImageLoadError(ValueError):
    """An image that cannot be read; the message names it and says what to do."""


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB as a viewer shows the image: EXIF rotation applied, transparency composited over white, 16-bit and
    float samples scaled to 8 bits (PIL's own ``convert("RGB")`` clips them, which turns a 16-bit PNG white)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        extrema = image.getextrema()
        top = extrema[1] if isinstance(extrema[1], (int, float)) else max(e[1] for e in extrema)
        image = image.point(lambda v: v / 257) if image.mode != "I" or top > 255 else image
        image = image.convert("L")
    elif image.mode == "F":
        low, high = image.getextrema()
        image = image.point(lambda v: v * 255) if high <= 1.0 else image
        image = image.convert("L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
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
            f"{name} has more pixels than allowed ({err}); downscale it before use."
        ) from err
    except UnidentifiedImageError as err:
        raise ImageLoadError(f"{name} is not a readable image (its format is not recognised).") from err
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
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(f"image {path} does not exist; check the image folder and the image path.") from None
    except IsADirectoryError:
        raise ImageLoadError(f"image {path} is a folder, not an image file.") from None
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
