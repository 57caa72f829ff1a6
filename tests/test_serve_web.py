"""The web demo in a real headless Chromium (Debian's ``chromium`` driven by Playwright), against the demo running as
a subprocess on a free loopback port with a tiny LLaVA + MuNG checkpoint.

A person's path: pick a tiny-world example, ask (the answer streams in), press side by side, press noise map; and
the mistakes: a non-image file, an over-large image, an empty question, each answered by a message in the page
while the server keeps serving. Answers and noise maps are checked against the same model run in this process.
Every request the page makes to anything but the demo's own address is blocked and reported.

In CI a missing browser fails these tests; set MUNG_ALLOW_NO_BROWSER=1 to skip them on a machine without one.
"""

import io
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageChops

from benchmarks.servers import running_server
from mung.images import load_image
from mung.loading import LoadOptions, load
from mung.visualize import noise_figure, noise_maps
from serve_helpers import REPO, first_eval_image, reference_answer
from test_eval_inference import build_tiny_llava

CHROMIUM = os.environ.get("MUNG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
MAX_NEW_TOKENS = 24
MAX_PIXELS = 40_000
TIMEOUT_MS = 120_000


def sync_playwright_or_fail():
    """Playwright's entry point, or the test's end: a failure (CI) or, with MUNG_ALLOW_NO_BROWSER=1, a skip."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "Playwright for Python is not installed (pip install -e '.[serve,dev]')"
    if problem is None and not os.path.exists(CHROMIUM):
        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set MUNG_CHROMIUM)"
    if problem:
        if os.environ.get("MUNG_ALLOW_NO_BROWSER") == "1":
            pytest.skip(problem)
        pytest.fail(problem + "; set MUNG_ALLOW_NO_BROWSER=1 to skip the browser tests where none can be installed")
    return sync_playwright


@pytest.fixture(scope="module")
def checkpoint(tiny_world, tmp_path_factory):
    torch.manual_seed(0)  # the generator starts random: the same answers every run
    return build_tiny_llava(tiny_world, tmp_path_factory.mktemp("web") / "tiny-llava")


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return load(checkpoint, options=LoadOptions(device="cpu"))


@pytest.fixture(scope="module")
def demo_url(checkpoint, tiny_world, tmp_path_factory):
    world = str(Path(tiny_world["image_folder"]).parent)
    args = ["--model-path", checkpoint, "--device", "cpu", "--examples", world, "--max-image-pixels", str(MAX_PIXELS),
            "--max-new-tokens-limit", "64"]
    log = tmp_path_factory.mktemp("logs") / "web.log"
    with running_server("llava_noise.serve.web", args, log, ready_path="/", cwd=REPO) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def browser():
    sync_playwright = sync_playwright_or_fail()
    with sync_playwright() as playwright:
        # Loopback only: every host name but the loopback address resolves to nothing.
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                  "--disable-background-networking", "--disable-component-update", "--no-pings"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, demo_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    blocked = []

    def loopback_only(route):
        if route.request.url.startswith(demo_url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", loopback_only)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(demo_url)
    page.wait_for_selector("#image-upload")
    yield page
    context.close()
    assert not blocked, f"the page tried to reach beyond the demo: {blocked[:5]}"


def status_says(page, words: str) -> str:
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_contain_text(words, timeout=TIMEOUT_MS)
    return page.inner_text("#status")


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def no_error_shown(page) -> None:
    text = page.inner_text("body")
    assert "Traceback" not in text and "Error" not in text  # no stack trace, no Gradio error toast


def record_chat_updates(page) -> None:
    """Remember every distinct text the chat shows from now on (a streamed answer shows several)."""
    page.evaluate("""() => {
        window.chatTexts = [];
        const chat = document.querySelector('#chat');
        new MutationObserver(() => {
            const text = chat.innerText;
            if (window.chatTexts[window.chatTexts.length - 1] !== text) window.chatTexts.push(text);
        }).observe(chat, {subtree: true, childList: true, characterData: true});
    }""")


def fetched_image(page, selector: str) -> Image.Image:
    source = page.get_attribute(selector, "src")
    response = page.request.get(source)
    assert response.ok, source
    return Image.open(io.BytesIO(response.body())).convert("RGB")


def same_image(a: Image.Image, b: Image.Image) -> bool:
    if a.size != b.size:
        return False
    difference = ImageChops.difference(a, b).getextrema()
    return max(high for _, high in difference) <= 2


def test_example_ask_stream_side_by_side_and_noise_map(page, loaded, tiny_world, tmp_path):
    image_path = first_eval_image(tiny_world)
    page.get_by_text(os.path.basename(image_path)).first.click()  # the first example: image and question
    status_says(page, "Image loaded (112x112)")
    question = page.input_value("#question textarea")
    with open(tiny_world["eval_questions"]) as handle:  # the example is the world's first eval question
        assert question == json.loads(handle.readline())["text"]
    set_number(page, "temperature", 0)
    set_number(page, "max-new-tokens", MAX_NEW_TOKENS)
    record_chat_updates(page)
    page.click("#send")
    status_says(page, "Answered with noise mean")
    turns = [("user", "<image>\n" + question)]
    pieces = []
    mung = reference_answer(loaded, turns, [image_path], MAX_NEW_TOKENS, "mean", pieces)
    base = reference_answer(loaded, turns, [image_path], MAX_NEW_TOKENS, "off")
    chat_texts = page.evaluate("window.chatTexts")
    assert mung in chat_texts[-1] and question.split("\n")[0] in chat_texts[-1]
    assert len(pieces) >= 2  # the seeded tiny model says several words here
    partial = [text for text in chat_texts if pieces[0].strip() in text and mung not in text]
    assert partial, chat_texts  # the start of the answer was shown before the whole of it: it streamed

    page.click("#side-by-side")
    status_says(page, "left with noise off, right with noise mean")
    assert page.input_value("#answer-base textarea") == base
    assert page.input_value("#answer-mung textarea") == mung

    page.click("#noise-map")
    status_says(page, "Noise map for")
    maps, box = noise_maps(loaded, load_image(image_path), question)
    for elem_id, name in (("map-mu", "mu_norm"), ("map-sigma", "sigma_mean")):
        shown = fetched_image(page, f"#{elem_id} img")
        expected = noise_figure(load_image(image_path), maps[name], name, box)
        assert shown.size == expected.size and shown.height > 112  # the overlay at 112x112, its key underneath
        assert same_image(shown, expected), elem_id
    no_error_shown(page)
    page.screenshot(path=str(tmp_path / "web_demo.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'web_demo.png'}")


def test_bad_uploads_and_empty_questions_get_a_message_and_the_demo_keeps_serving(page, tiny_world, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    page.set_input_files("#image-upload input[type=file]", str(notes))
    assert "notes.txt" in status_says(page, "is not a readable image")

    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300), (0, 90, 0)).save(big)  # 90,000 pixels > 40,000
    page.set_input_files("#image-upload input[type=file]", str(big))
    status_says(page, "300x300 = 90,000 pixels, over the limit of 40,000")

    page.fill("#question textarea", "   ")
    page.click("#send")
    status_says(page, "Type a question first.")
    page.click("#noise-map")
    status_says(page, "Upload an image first")

    page.set_input_files("#image-upload input[type=file]", first_eval_image(tiny_world))
    status_says(page, "Image loaded")
    page.fill("#question textarea", "What shape is it?")
    set_number(page, "max-new-tokens", 4)
    page.click("#send")
    status_says(page, "Answered with noise")
    no_error_shown(page)
