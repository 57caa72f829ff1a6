"""Chat with a LLaVA-1.5 (MuNG) checkpoint in the terminal (``python -m llava_noise.serve.cli``).

One image per session (``--image-file``, a path or URL; optional), multi-turn history, replies streamed token by
token and cut at the template's stop string. The template comes from the checkpoint's config and tokenizer
(``--conv-mode`` overrides). An empty line or end of input ends the session.
"""

import argparse
import sys

import torch

from ..constants import IMAGE_TOKEN_INDEX
from ..eval.inference import (
    NOISE_MODES,
    ImageLoadError,
    conversation,
    default_device,
    generate,
    generation_kwargs,
    image_tensor,
    infer_conv_mode,
    load_for_inference,
    load_image,
    stop_string,
    user_message,
)
from ..mm_utils import tokenizer_image_token
from .streaming import StopStringStreamer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-path", type=str, required=True)
    parser.add_argument("--model-base", type=str, default=None)
    parser.add_argument("--image-file", type=str, default=None)
    parser.add_argument("--device", type=str, default=default_device())
    parser.add_argument("--conv-mode", type=str, default=None)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--load-8bit", action="store_true")
    parser.add_argument("--load-4bit", action="store_true")
    parser.add_argument("--debug", action="store_true", help="print each full prompt and reply")
    parser.add_argument("--noise-mode", choices=NOISE_MODES, default=None,
                        help="noise generator mode (default: the checkpoint's inference_mode)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # names the shared generation helpers read
    args.top_p, args.num_beams = None, 1
    return args


def read_user_line(prompt):
    """The next user message, or None at end of input."""
    try:
        return input(prompt)
    except EOFError:
        return None


def chat(args):
    image = None
    if args.image_file:
        try:
            image = load_image(args.image_file)  # before the model loads: a bad path fails fast
        except ImageLoadError as err:
            sys.exit(f"error: {err}")
    loaded = load_for_inference(args, load_8bit=args.load_8bit, load_4bit=args.load_4bit)
    inferred = infer_conv_mode(loaded.model, loaded.tokenizer)
    conv_mode = args.conv_mode or inferred
    if args.conv_mode and args.conv_mode != inferred:
        print(f"[note] the checkpoint's conversation mode is {inferred}; using --conv-mode {args.conv_mode}",
              file=sys.stderr)
    conv = conversation(conv_mode)
    stop_str = stop_string(conv)
    pixels = image_tensor([image], loaded) if image is not None else None
    use_start_end = bool(getattr(loaded.model.config, "mm_use_im_start_end", False))
    gen_kwargs = generation_kwargs(args)
    user, assistant = conv.roles
    first = True
    while True:
        line = read_user_line(f"{user}: ")
        if line is None or not line.strip():
            print("exit...")
            return conv
        message = user_message(line, pixels is not None, use_start_end) if first else line
        first = False
        conv.append_message(user, message)
        conv.append_message(assistant, None)
        prompt = conv.get_prompt()
        ids = tokenizer_image_token(prompt, loaded.tokenizer, IMAGE_TOKEN_INDEX)
        print(f"{assistant}: ", end="", flush=True)
        streamer = StopStringStreamer(loaded.tokenizer, stop_str, skip_special_tokens=True)
        with torch.inference_mode():
            reply = generate(loaded, [ids], pixels, gen_kwargs, stop_str, streamer=streamer)[0]
        conv.messages[-1][-1] = reply
        if args.debug:
            print("\n", {"prompt": prompt, "outputs": reply}, "\n", sep="")


def main(argv=None):
    chat(parse_args(argv))


if __name__ == "__main__":
    main()
