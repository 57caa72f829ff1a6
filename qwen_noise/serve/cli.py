"""Chat with a Qwen2.5-VL + MuNG model in the terminal: streamed replies, multi-turn; an empty line or EOF exits.

    python -m qwen_noise.serve.cli --model-path <folder> [--model-base <base>] [--image-file <image>]
"""

import argparse

import torch
from transformers import TextStreamer, set_seed

from ..data import build_inference_inputs
from ..data.prompting import IMAGE_PLACEHOLDER
from ..model.builder import load_pretrained_model


def read_user_turn(prompt: str) -> str:
    """The next user message; '' on an empty line or end of input."""
    try:
        return input(prompt).strip()
    except EOFError:
        return ""


@torch.inference_mode()
def chat(args: argparse.Namespace) -> None:
    set_seed(args.seed)
    processor, model = load_pretrained_model(
        args.model_path,
        args.model_base,
        device=args.device,
        load_8bit=args.load_8bit,
        load_4bit=args.load_4bit,
        noise_mode=args.noise_mode,
    )
    tokenizer = processor.tokenizer
    images = [args.image_file] if args.image_file else []
    turns: list[tuple[str, str]] = []
    while True:
        message = read_user_turn("USER: ")
        if not message:
            print("exit...")
            return
        if images and not turns:
            message = IMAGE_PLACEHOLDER + "\n" + message  # one image per session, in the first turn
        turns.append(("user", message))
        inputs = build_inference_inputs(
            processor, turns, images, min_pixels=args.min_pixels, max_pixels=args.max_pixels
        )
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        print("ASSISTANT: ", end="", flush=True)
        output = model.generate(
            **inputs,
            do_sample=args.temperature > 0,
            temperature=args.temperature if args.temperature > 0 else None,
            max_new_tokens=args.max_new_tokens,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.pad_token_id,
            streamer=TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True),
        )
        reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        turns.append(("assistant", reply))
        if args.debug:
            print({"prompt_tokens": inputs["input_ids"].shape[1], "reply": reply})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-base", default=None)
    parser.add_argument("--image-file", default=None)
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available).")
    parser.add_argument("--conv-mode", default="qwen2_5_vl", help="Accepted for LLaVA compatibility; Qwen's chat template is always used.")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--noise-mode", choices=["sample", "mean", "off"], default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-pixels", type=int, default=None)
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--load-8bit", action="store_true")
    parser.add_argument("--load-4bit", action="store_true")
    parser.add_argument("--debug", action="store_true")
    return parser


def main() -> None:
    chat(build_parser().parse_args())


if __name__ == "__main__":
    main()
