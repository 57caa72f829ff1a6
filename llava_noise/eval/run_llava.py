"""Answer one query about one or more images and print it (``python -m llava_noise.eval.run_llava``).

``--image-file`` takes paths or URLs separated by ``--sep``; the query may place them with
``<image-placeholder>``, otherwise the images go first. ``--conv-mode`` defaults to the checkpoint's template.
"""

import argparse
import sys

from ..constants import IMAGE_PLACEHOLDER, IMAGE_TOKEN_INDEX
from ..mm_utils import tokenizer_image_token
from .inference import (
    ImageLoadError,
    add_generation_args,
    add_model_args,
    conversation,
    generate,
    generation_kwargs,
    image_tensor,
    image_token,
    infer_conv_mode,
    load_for_inference,
    load_image,
    stop_string,
)


def query_message(query, n_images, use_start_end):
    """The user message: each placeholder (or, without placeholders, the front) gets one image token."""
    token = image_token(use_start_end)
    if IMAGE_PLACEHOLDER in query:
        if query.count(IMAGE_PLACEHOLDER) != n_images:
            raise ValueError(f"the query has {query.count(IMAGE_PLACEHOLDER)} {IMAGE_PLACEHOLDER} but {n_images} "
                             "images were given")
        return query.replace(IMAGE_PLACEHOLDER, token)
    return "\n".join([token] * n_images + [query]) if n_images else query


def eval_model(args):
    try:
        images = [load_image(s) for s in args.image_file.split(args.sep)] if args.image_file else []
    except ImageLoadError as err:
        sys.exit(f"error: {err}")
    loaded = load_for_inference(args)
    conv_mode = args.conv_mode or infer_conv_mode(loaded.model, loaded.tokenizer)
    conv = conversation(conv_mode)
    use_start_end = bool(getattr(loaded.model.config, "mm_use_im_start_end", False))
    conv.append_message(conv.roles[0], query_message(args.query, len(images), use_start_end))
    conv.append_message(conv.roles[1], None)
    ids = tokenizer_image_token(conv.get_prompt(), loaded.tokenizer, IMAGE_TOKEN_INDEX)
    pixels = image_tensor(images, loaded) if images else None
    answer = generate(loaded, [ids], pixels, generation_kwargs(args), stop_string(conv))[0]
    print(answer)
    return answer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(parser)
    add_generation_args(parser)
    parser.set_defaults(conv_mode=None, max_new_tokens=512)
    parser.add_argument("--image-file", type=str, default=None)
    parser.add_argument("--query", type=str, required=True)
    parser.add_argument("--sep", type=str, default=",")
    return eval_model(parser.parse_args(argv))


if __name__ == "__main__":
    main()
