"""The one way every path (training, evaluation, chat, serving, visualisation) turns a file, URL or bytes into an
RGB image, with one error type that says which image failed and why."""

from __future__ import annotations

import base64
import binascii
import io
import os
import stat
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .paths import missing_reason

ImageSource = Union[str, os.PathLike, bytes, Image.Image]
REMOTE_PREFIXES = ("http://", "https://")
DOWNLOAD_BLOCK = 64 * 1024


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


def _too_many_pixels_for_pil(name: str, max_pixels: Optional[int], err: Exception) -> ImageLoadError:
    """PIL refuses to open an image of more than twice its ``MAX_IMAGE_PIXELS``; with a bound of our own below that,
    the image is over our bound too, and is said to be so (not "corrupt")."""
    pil_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    if max_pixels is not None and max_pixels < pil_limit:
        return ImageLoadError(
            f"{name} has more than {pil_limit:,} pixels, over the limit of {max_pixels:,}; downscale it (or start the "
            "server with a larger --max-image-pixels)."
        )
    return ImageLoadError(
        f"{name} has more pixels than PIL allows (its guard against decompression bombs: {err}); downscale the "
        "image, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
    )


@contextmanager
def opened_image(data: bytes, name: str, max_pixels: Optional[int] = None) -> Iterator[Image.Image]:
    """``data`` opened by PIL, which reads the header only: size and mode are known, no pixel is decoded until the
    caller's ``load()``. More than ``max_pixels`` pixels is refused here; every failure, in here or in the caller's
    block, is one ``ImageLoadError`` naming ``name`` once."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            check_pixel_bound(opened.size, name, max_pixels)
            yield opened
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as err:
        raise _too_many_pixels_for_pil(name, max_pixels, err) from None
    except UnidentifiedImageError:
        raise ImageLoadError(
            f"{name} cannot be decoded: it is not a readable image (its format is not recognised: corrupt or "
            "truncated, or not an image at all). Re-create the image."
        ) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageLoadError(f"{name} cannot be decoded ({err}); it is corrupt or truncated. Re-create the file."
                             ) from err


def image_size(data: bytes, name: str, max_pixels: Optional[int] = None) -> tuple[int, int]:
    """(width, height) of the image in ``data`` from its header, without decoding a pixel."""
    with opened_image(data, name, max_pixels) as opened:
        return opened.size


def decode_image_bytes(data: bytes, name: str, max_pixels: Optional[int] = None) -> Image.Image:
    """Decode ``data`` completely (so truncation shows here) into RGB; more than ``max_pixels`` pixels is refused
    from the header, before decoding."""
    with opened_image(data, name, max_pixels) as opened:
        opened.load()
        return to_rgb(opened)


def base64_image_bytes(data: str, name: str = "base64 image") -> bytes:
    """The bytes of a base64 string or a ``data:image/...;base64,`` URL (nothing decoded as an image)."""
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if ";base64" not in header:
            raise ImageLoadError(f"{name}: only base64 data URLs are supported (data:image/png;base64,...).")
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageLoadError(f"{name}: invalid base64 image data ({err}).") from err


def decode_base64_image(data: str, name: str = "base64 image", max_pixels: Optional[int] = None) -> Image.Image:
    """A base64 string (or a ``data:image/...;base64,`` URL) → RGB."""
    return decode_image_bytes(base64_image_bytes(data, name), name, max_pixels)


def _read_file(path: Path, max_bytes: Optional[int] = None) -> bytes:
    """A regular file's bytes, refused over ``max_bytes`` (None: no bound) before it is read: a device or a pipe
    (``/dev/zero``, a FIFO) would never end, so only regular files are read."""
    reason = missing_reason(path)
    if reason:
        missing = not os.path.exists(path)  # not there, a broken link or a link loop (vs a folder, no permission)
        raise (ImageMissing if missing else ImageLoadError)(
            f"image {path} {reason}; check the image folder and the image path."
        )
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it changes nothing for a regular file.
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ImageLoadError(f"image {path} is not a regular file (a device, pipe or socket); name an "
                                     "image file.")
            if max_bytes is not None and info.st_size > max_bytes:
                raise ImageLoadError(f"image {path} is {info.st_size:,} bytes, over the limit of {max_bytes:,}; "
                                     "send a smaller image.")
            data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    except OSError as err:
        raise ImageLoadError(f"cannot read image file {path}: {err.strerror or err}.") from err
    if max_bytes is not None and len(data) > max_bytes:  # it grew while being read
        raise ImageLoadError(f"image {path} is over the limit of {max_bytes:,} bytes; send a smaller image.")
    return data


def _socket_of(response: Any) -> Any:
    """The socket under an ``http.client`` response (None where this Python keeps it elsewhere): its timeout is
    the only bound on a read that waits."""
    return getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)


def _download(url: str, timeout: float, max_bytes: Optional[int]) -> bytes:
    """The body at ``url``, streamed: refused once it passes ``max_bytes`` (None: no bound) or ``timeout`` seconds in
    all (each read waits at most until the deadline)."""
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if max_bytes is not None and declared and declared.isdigit() and int(declared) > max_bytes:
                raise ImageLoadError(f"remote image {url[:200]} is {int(declared):,} bytes, over the limit of "
                                     f"{max_bytes:,} (--max-remote-image-bytes).")
            parts, size = [], 0
            sock = _socket_of(response)
            while True:
                if sock is not None:  # no read may wait past the deadline (else a slow server holds it ~2x)
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    block = response.read1(DOWNLOAD_BLOCK)  # what has arrived: the deadline is checked often
                except TimeoutError:
                    block = None
                if block is None or time.monotonic() > deadline:
                    raise ImageLoadError(f"remote image {url[:200]} took over {timeout:g} s to download "
                                         "(--remote-image-timeout); its download was stopped.")
                if not block:
                    break
                size += len(block)
                if max_bytes is not None and size > max_bytes:
                    raise ImageLoadError(f"remote image {url[:200]} is over the limit of {max_bytes:,} bytes "
                                         "(--max-remote-image-bytes); its download was stopped.")
                parts.append(block)
            return b"".join(parts)
    except ImageLoadError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ImageLoadError(
            f"cannot download image {url[:200]}: {reason}. Without network access, pass a local file instead."
        ) from err


def read_image_source(source: Union[str, os.PathLike], folder: str | os.PathLike | None = None,
                      allow_remote: bool = True, timeout: float = 10.0,
                      max_bytes: Optional[int] = None) -> tuple[bytes, str]:
    """(the encoded bytes, the name to report) of an image path (relative paths under ``folder``), ``file://`` path,
    data URL or http(s) URL (downloaded within ``max_bytes`` and ``timeout``; a file is read within ``max_bytes``
    too); nothing is decoded."""
    text = str(source)
    if text.startswith("data:"):
        return base64_image_bytes(text, "data URL image"), "data URL image"
    if text.startswith(REMOTE_PREFIXES):
        if not allow_remote:
            raise ImageLoadError(f"remote image {text[:200]} refused: remote images are not allowed here.")
        return _download(text, timeout, max_bytes), text[:200]
    if text.startswith("file://"):
        text = text[len("file://"):]
    path = Path(text).expanduser()
    if folder and not path.is_absolute():
        path = Path(folder) / path
    return _read_file(path, max_bytes), str(path)


def load_image(source: ImageSource, folder: str | os.PathLike | None = None, allow_remote: bool = True,
               timeout: float = 10.0, max_pixels: Optional[int] = None, max_bytes: Optional[int] = None
               ) -> Image.Image:
    """An RGB image from a path (relative paths under ``folder``), an http(s) URL, a data URL, raw bytes or a PIL
    image; every failure is an ``ImageLoadError`` naming the source. ``max_pixels`` bounds width × height;
    ``max_bytes`` and ``timeout`` bound a download."""
    if isinstance(source, Image.Image):
        check_pixel_bound(source.size, "the given image", max_pixels)
        return to_rgb(source)
    if isinstance(source, bytes):
        return decode_image_bytes(source, "the given image bytes", max_pixels)
    data, name = read_image_source(source, folder, allow_remote, timeout, max_bytes)
    return decode_image_bytes(data, name, max_pixels)
