"""Chat with any MuNG checkpoint in the terminal (``python -m mung.serve.cli``; LLaVA's ``llava.serve.cli``).

One image per session (``--image-file``, a path or URL; optional), multi-turn history, replies streamed token by
token and cut at the template's stop string. LLaVA checkpoints use the template they were trained with
(``--conv-mode`` overrides). An empty line or end of input ends the session.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..cli_args import add_backbone_args, add_model_args, generation_settings, load_from_args
from ..commands import run_command
from ..help_text import description
from ..images import ImageLoadError, load_image

if TYPE_CHECKING:  # the model code (torch) loads after the flags are read: --help imports none of it
    from ..chat import ChatSession

CHAT_MAX_NEW_TOKENS = 512  # LLaVA's CLI default


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description(__doc__))
    add_model_args(parser)
    add_backbone_args(parser)
    parser.add_argument("--image-file", type=str, default=None, help="the image to chat about: a path or URL (optional)")
    parser.add_argument("--temperature", type=float, default=0.2, help="sampling temperature (0: greedy)")
    parser.add_argument("--top_p", "--top-p", dest="top_p", type=float, default=None,
                        help="nucleus sampling: the smallest set of tokens with this much probability")
    parser.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=int, default=None,
                        help=f"most new tokens of a reply (default: {CHAT_MAX_NEW_TOKENS}, or what the model's context "
                             "leaves)")
    parser.add_argument("--debug", action="store_true", help="print each full prompt and reply")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> ChatSession:
    from ..chat import chat
    from ..context import prompt_budget

    images = []
    if args.image_file:
        try:
            images = [load_image(args.image_file)]  # before the model loads: a bad path fails fast
        except ImageLoadError as err:
            sys.exit(f"error: {err}")
    loaded = load_from_args(args)
    inferred = loaded.backbone.default_template(loaded)
    if args.conv_mode and inferred and args.conv_mode != inferred:
        print(f"[note] the checkpoint's conversation mode is {inferred}; using --conv-mode {args.conv_mode}",
              file=sys.stderr)
    settings = generation_settings(args, default_max_new_tokens=CHAT_MAX_NEW_TOKENS)
    prompt_budget(loaded, settings)  # an asked-for reply longer than the context fails now, not at the first message
    return chat(loaded, images, settings, debug=args.debug)


def main(argv=None) -> ChatSession:
    return run(parse_args(argv))


if __name__ == "__main__":
    run_command(main)
