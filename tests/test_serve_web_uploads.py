"""Web demo uploads over a stub model (the upload handler runs no model), through Gradio's own upload route and event
API with ``gradio_client`` (no browser): an uploaded file is gone from Gradio's temporary folder once read, whether
it was an image or not; a non-image is refused with a message; an image over ``--max-image-pixels`` is said to be
too large, not corrupt; example files stay."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from benchmarks.servers import free_port
from mung.serve.session import ModelWorker
from mung.serve.web import build_demo
from mung.serve.web_handlers import DemoHandlers

MAX_PIXELS = 40_000


def stub_loaded():
    """What the page and the upload handler read of a loaded model: no noise generator, no generation."""
    return SimpleNamespace(model=torch.nn.Linear(2, 2), noise_mode="off", noise_label="off", model_name="stub",
                           backbone=SimpleNamespace(name="stub"))


@pytest.fixture
def demo(tmp_path, monkeypatch):
    """(base URL, Gradio's temporary folder, an example image) of the demo over the stub, on a free loopback port."""
    gradio_dir = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(gradio_dir))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    example = tmp_path / "examples" / "red.png"
    example.parent.mkdir()
    Image.new("RGB", (20, 20), (200, 0, 0)).save(example)
    worker = ModelWorker(stub_loaded(), max_waiting=1)
    app = build_demo(DemoHandlers(worker, MAX_PIXELS), 16, [(str(example), "What colour?")])
    _, url, _ = app.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                                   quiet=True, ssr_mode=False, allowed_paths=[str(example.parent)],
                                   max_file_size=2**20)
    yield url, gradio_dir, example
    app.close()
    worker.close()


def upload(url: str, path: Path) -> tuple:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    return client.predict(handle_file(str(path)), api_name="/load_upload")


def kept_copies(gradio_dir: Path, name: str) -> list[str]:
    return [str(path) for path in gradio_dir.rglob(name)]


def test_an_uploaded_image_is_read_then_deleted_and_an_example_is_not(demo, tmp_path):
    url, gradio_dir, example = demo
    picture = tmp_path / "picture.png"
    Image.new("RGB", (30, 20), (0, 0, 200)).save(picture)
    status = upload(url, picture)[-1]
    assert status.startswith("Image loaded (30x20)"), status
    assert kept_copies(gradio_dir, "picture.png") == []
    from gradio_client import Client

    status = Client(url, verbose=False, download_files=False).predict(
        {"path": str(example), "meta": {"_type": "gradio.FileData"}}, api_name="/load_upload")[-1]
    assert status.startswith("Image loaded (20x20)") and example.exists(), status


def test_a_non_image_upload_is_refused_and_deleted(demo, tmp_path):
    url, gradio_dir, _ = demo
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n" * 100)
    status = upload(url, notes)[-1]
    assert "notes.txt" in status and "is not a readable image" in status, status
    assert kept_copies(gradio_dir, "notes.txt") == []


def test_an_image_over_the_pixel_bound_is_too_large_not_corrupt(demo, tmp_path):
    url, gradio_dir, _ = demo
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300), (0, 90, 0)).save(big)  # 90,000 pixels > 40,000
    status = upload(url, big)[-1]
    assert "300x300 = 90,000 pixels, over the limit of 40,000" in status and "corrupt" not in status, status
    assert kept_copies(gradio_dir, "big.png") == []
