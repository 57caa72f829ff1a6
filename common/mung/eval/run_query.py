"""Answer one query about zero or more images and print it (``python -m mung.eval.run_query``; LLaVA's
``run_llava``).

``--image-file`` takes paths or URLs separated by ``--sep``; the query may place them with
``<image-placeholder>``, otherwise the images go first. ``--conv-mode`` defaults to the checkpoint's template.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..cli_args import add_backbone_args, add_generation_args, add_model_args, generation_settings, load_from_args
from ..commands import run_command
from ..help_text import description
from ..images import ImageLoadError, load_image

if TYPE_CHECKING:  # the model code (torch) loads after the flags are read: --help imports none of it
    from ..backbones import Prompt

QUERY_PLACEHOLDER = "<image-placeholder>"
LLAVA_MAX_NEW_TOKENS = 512  # run_llava's default; without --max-new-tokens a smaller context lowers it


def query_prompt(query: str, images: list) -> Prompt:
    """Each ``<image-placeholder>`` (or, without any, the front) gets one image."""
    from ..backbones import IMAGE_PLACEHOLDER, Prompt

    if QUERY_PLACEHOLDER in query:
        if query.count(QUERY_PLACEHOLDER) != len(images):
            raise ValueError(f"the query has {query.count(QUERY_PLACEHOLDER)} {QUERY_PLACEHOLDER} but {len(images)} "
                             "images were given")
        return Prompt(turns=[("user", query.replace(QUERY_PLACEHOLDER, IMAGE_PLACEHOLDER))], images=images)
    return Prompt.question(query, images)


def run(args: argparse.Namespace) -> str:
    from ..answering import answer_prompt

    try:
        images = [load_image(s) for s in args.image_file.split(args.sep)] if args.image_file else []
    except ImageLoadError as err:
        sys.exit(f"error: {err}")
    loaded = load_from_args(args)
    settings = generation_settings(args, default_max_new_tokens=LLAVA_MAX_NEW_TOKENS)
    answer, _ = answer_prompt(loaded, query_prompt(args.query, images), settings)
    print(answer)
    return answer


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=description(__doc__))
    add_model_args(parser)
    add_generation_args(parser, max_new_tokens=None)
    add_backbone_args(parser)
    parser.add_argument("--image-file", type=str, default=None, help="image paths or URLs, separated by --sep")
    parser.add_argument("--query", type=str, required=True,
                        help="the question; <image-placeholder> places the images (else they go first)")
    parser.add_argument("--sep", type=str, default=",", help="separator of the --image-file list")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    run_command(main)
