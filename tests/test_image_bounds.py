"""Images a request names, bounded before they cost much: downloads (``--allow-remote-images``) stopped past a byte
limit or a total time, served by a local HTTP server in a thread; pixel bounds read from the header, said as such
(never "corrupt"), PIL's own bomb guard included."""

import io
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from mung.images import ImageLoadError, image_size, load_image

MIB = 2**20


def one_bit_png(width: int, height: int) -> bytes:
    """A black 1-bit PNG written by hand (rows of zeros compress to almost nothing): big in pixels, small in bytes."""
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_an_image_over_the_bound_is_too_large_not_corrupt():
    data = one_bit_png(5000, 5000)
    with pytest.raises(ImageLoadError) as caught:
        load_image(data, max_pixels=4096 * 4096)
    said = str(caught.value)
    assert "5000x5000 = 25,000,000 pixels, over the limit of 16,777,216" in said
    assert "corrupt" not in said and "cannot be decoded" not in said
    assert image_size(data, "x") == (5000, 5000)


def test_an_image_over_pils_own_guard_is_over_the_servers_bound_too():
    data = one_bit_png(20_000, 20_000)  # 400 M pixels: PIL refuses to open it at all
    with pytest.raises(ImageLoadError, match=r"has more than [\d,]+ pixels, over the limit of 16,777,216"):
        load_image(data, max_pixels=4096 * 4096)
    with pytest.raises(ImageLoadError, match="more pixels than PIL allows"):
        load_image(data)  # no bound of ours: PIL's guard is named


class Served(BaseHTTPRequestHandler):
    """/big: 8 MiB without a length; /declared: a 300 MB Content-Length; /slow: a byte every 0.1 s for 8 s."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        if self.path == "/declared":
            self.send_header("Content-Length", str(300_000_000))
        self.end_headers()
        try:
            if self.path == "/big":
                for _ in range(128):
                    self.wfile.write(b"\x00" * 65536)
            elif self.path == "/stall":  # one byte just before the deadline, then nothing for 5 s
                time.sleep(0.9)
                self.wfile.write(b"\x00")
                self.wfile.flush()
                time.sleep(5)
            elif self.path == "/slow":
                for _ in range(80):
                    self.wfile.write(b"\x00")
                    self.wfile.flush()
                    time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_base():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Served)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_download_past_the_byte_limit_is_stopped(http_base):
    with pytest.raises(ImageLoadError, match=r"over the limit of 1,048,576 bytes"):
        load_image(http_base + "/big", max_bytes=MIB)
    with pytest.raises(ImageLoadError, match=r"300,000,000 bytes, over the limit of 1,048,576"):
        load_image(http_base + "/declared", max_bytes=MIB)  # refused from its declared length, nothing read


def test_a_slow_download_is_stopped_at_its_deadline(http_base):
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match=r"took over 1 s"):
        load_image(http_base + "/slow", timeout=1.0)
    assert time.monotonic() - started < 3.0  # at most about twice the timeout, not the server's 8 s


def test_a_read_never_waits_past_the_deadline(http_base):
    """A byte at 0.9 s, then silence: the next read may wait only the 0.1 s left, not a whole timeout again."""
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match=r"took over 1 s"):
        load_image(http_base + "/stall", timeout=1.0)
    assert time.monotonic() - started < 1.5


def test_image_size_reads_the_header_only():
    data = io.BytesIO()
    Image.new("RGB", (300, 200)).save(data, format="PNG")
    truncated = data.getvalue()[:60]  # the header and little else: decoding would fail
    assert image_size(truncated, "x") == (300, 200)


def test_a_local_file_is_read_within_the_byte_bound_and_only_if_regular(tmp_path):
    """file:// images (a server's --allow-local-images) get the download's byte bound; a device or a pipe would
    never end (file:///dev/zero): refused before a byte is read."""
    import os

    big = tmp_path / "big.png"
    big.write_bytes(one_bit_png(64, 64) + b"\x00" * (2 * MIB))
    with pytest.raises(ImageLoadError, match=r"big.png is 2,0\d\d,\d\d\d bytes, over the limit of 1,048,576"):
        load_image(f"file://{big}", max_bytes=MIB)
    assert load_image(f"file://{big}").size == (64, 64)  # no bound given: read as before (trailing bytes ignored)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        with pytest.raises(ImageLoadError, match=r"is not a regular file"):
            load_image(f"file://{path}", max_bytes=MIB)
