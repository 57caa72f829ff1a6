"""A web demo for any MuNG checkpoint, in one process (``python -m mung.serve.web``; also ``llava_noise.serve.web``
and ``qwen_noise.serve.web``).

    python -m mung.serve.web --model-path <ckpt> [--model-base <base>] [--examples <tiny world or image folder>]

Upload an image and chat about it (streamed; temperature, top-p, max new tokens, seed, noise mode), answer the same
question with noise off and with MuNG side by side in one click, and see where the generator puts its noise for
this image and question (‖μ‖ and σ per patch over the image, with colour bars). Listens on 127.0.0.1 unless
``--host`` says otherwise; ``--share`` asks Gradio for a public link.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING, Optional

from .examples import example_rows
from .options import add_server_args, bind_port, check_server_args, is_loopback, worker_from_args
from ..commands import run_command
from ..flag_choices import NOISE_MODES
from ..help_text import description

if TYPE_CHECKING:  # gradio, torch and the model code load after the flags are read (--help imports none of them)
    import gradio as gr

    from .session import ModelWorker
    from .web_handlers import DemoHandlers

logger = logging.getLogger(__name__)
# Files Gradio keeps for this demo (uploads the handlers never saw, e.g. sent to its upload route alone) are deleted
# once older than this, checked as often (seconds).
UPLOAD_MAX_AGE = 600


def _header(worker: ModelWorker) -> str:
    loaded = worker.loaded
    generator = ("with a noise generator" if worker.has_generator()
                 else "**without** a noise generator (sample and mean are refused)")
    return (f"## MuNG demo: `{loaded.model_name}`\n"
            f"{loaded.backbone.name} backbone, {generator}; default noise: {loaded.noise_label}. "
            "Upload an image, ask, then compare with the base model or look at the noise map.")


def _settings_panel(worker: ModelWorker, max_new_tokens_limit: int) -> list:
    import gradio as gr

    with gr.Accordion("Generation", open=True):
        temperature = gr.Slider(0, 2, value=0.2, step=0.05, label="Temperature (0: greedy)", elem_id="temperature")
        top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top-p", elem_id="top-p")
        max_new_tokens = gr.Slider(1, max_new_tokens_limit, value=min(128, max_new_tokens_limit), step=1,
                                   label="Max new tokens", elem_id="max-new-tokens")
        seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
        noise_mode = gr.Radio(list(NOISE_MODES), value=worker.default_noise_mode, label="Noise mode", elem_id="noise-mode",
                              info="sample: μ + σ·ε as in training; mean: μ only; off: the base model")
    return [temperature, top_p, max_new_tokens, seed, noise_mode]


def build_demo(handlers: DemoHandlers, max_new_tokens_limit: int,
               examples: Optional[list[tuple[str, str]]] = None) -> gr.Blocks:
    import gradio as gr

    """The page: image and settings on the left; chat, side by side and noise maps on the right."""
    cleaning = (UPLOAD_MAX_AGE, UPLOAD_MAX_AGE)
    with gr.Blocks(title="MuNG demo", analytics_enabled=False, delete_cache=cleaning) as demo:
        gr.Markdown(_header(handlers.worker))
        turns, image = gr.State([]), gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Image file", type="filepath", elem_id="image-upload")
                preview = gr.Image(label="Current image", type="pil", format="png", interactive=False, height=220,
                                   elem_id="image-preview")
                settings = _settings_panel(handlers.worker, max_new_tokens_limit)
            with gr.Column(scale=2):
                # Replies shown as plain text: model output is never rendered as markdown or HTML.
                chatbot = gr.Chatbot(label="Chat", height=300, elem_id="chat", render_markdown=False)
                question = gr.Textbox(label="Question", lines=2, elem_id="question",
                                      placeholder="Ask about the image (Enter sends)")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    compare = gr.Button("Side by side: base vs MuNG", elem_id="side-by-side")
                    show_map = gr.Button("Noise map", elem_id="noise-map")
                    clear = gr.Button("Clear chat", elem_id="clear")
                status = gr.Markdown(elem_id="status")
                with gr.Row():
                    base_answer = gr.Textbox(label="Base model (noise off)", interactive=False, elem_id="answer-base")
                    mung_answer = gr.Textbox(label="MuNG", interactive=False, elem_id="answer-mung")
                with gr.Row():
                    mu_map = gr.Image(label="|mu| map", type="pil", format="png", interactive=False, elem_id="map-mu")
                    sigma_map = gr.Image(label="sigma map", type="pil", format="png", interactive=False,
                                         elem_id="map-sigma")
        if examples:
            gr.Examples([[path, text] for path, text in examples], inputs=[upload, question], label="Examples")
        upload.change(handlers.load_upload, upload, [upload, image, preview, turns, chatbot, status])
        ask_outputs = [chatbot, turns, question, status]
        for trigger in (send.click, question.submit):
            trigger(handlers.ask, [question, turns, image, *settings], ask_outputs)
        compare.click(handlers.side_by_side, [question, turns, image, *settings], [base_answer, mung_answer, status])
        show_map.click(handlers.noise_map, [question, turns, image], [mu_map, sigma_map, status])
        clear.click(handlers.clear, None, [chatbot, turns, question, status])
    handlers.is_upload = lambda path: path in demo.upload_file_set
    return demo


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description(__doc__))
    add_server_args(parser, default_port=7860)
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public share link")
    parser.add_argument("--max-upload-bytes", type=int, default=64 * 2**20,
                        help="largest file a visitor may upload, refused by Gradio while it arrives (default 64 MiB)")
    parser.add_argument("--examples", default=None,
                        help="a tiny world folder (or its manifest.json): its first eval questions as examples; or "
                             "a folder of images")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    check_server_args(args)
    examples = example_rows(args.examples) if args.examples else None  # before loading: a bad path fails fast
    if not is_loopback(args.host) or args.share:
        logger.warning("The demo is reachable beyond this machine (%s%s).", args.host, ", share link" if args.share else "")
    bind_port(args.host, args.port).close()  # a busy port fails now, in one line, not after loading (Gradio binds)
    from .web_handlers import DemoHandlers

    worker = worker_from_args(args)
    demo = build_demo(DemoHandlers(worker, args.max_image_pixels), args.max_new_tokens_limit, examples)
    allowed = sorted({os.path.dirname(path) for path, _ in examples or []})
    # Gradio's own start-up lines name its Python arguments (share=True in launch()); say it in this command's flags.
    _, local_url, share_url = demo.queue(max_size=args.queue_size).launch(
        server_name=args.host, server_port=args.port, share=args.share, allowed_paths=allowed, show_error=False,
        ssr_mode=False, footer_links=[], max_file_size=args.max_upload_bytes, quiet=True,
        prevent_thread_lock=True)
    print(f"Serving the demo of {worker.loaded.model_name} ({worker.loaded.backbone.name}, noise "
          f"{worker.loaded.noise_label}) on {local_url}"
          + (f" and {share_url}" if share_url else "; --share asks Gradio for a public link") + ". Ctrl+C stops it.",
          flush=True)
    demo.block_thread()


if __name__ == "__main__":
    run_command(main)
