"""Answer a LLaVA-format question file with Qwen2.5-VL + MuNG (LLaVA's flags and answer format).

Input jsonl: {question_id, image, text, ...}; output jsonl: {question_id, prompt, text, answer_id, model_id, metadata}.
"""

import argparse
import json
import math
import os
import uuid
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import set_seed

from ..data import build_inference_inputs, load_records
from ..data.prompting import IMAGE_PLACEHOLDER
from ..model.builder import load_pretrained_model


def get_chunk(items: list, num_chunks: int, chunk_idx: int) -> list:
    """The ``chunk_idx``-th of ``num_chunks`` contiguous, nearly equal slices of ``items``."""
    if not 0 <= chunk_idx < num_chunks:
        raise ValueError(f"--chunk-idx {chunk_idx} must be in [0, {num_chunks}).")
    size = math.ceil(len(items) / num_chunks)
    return items[chunk_idx * size : (chunk_idx + 1) * size]


@torch.inference_mode()
def answer_question(model, processor, question: dict, args: argparse.Namespace) -> tuple[str, str]:
    """(prompt text, answer) for one question."""
    text = question["text"]
    images = [question["image"]] if question.get("image") else []
    if images and IMAGE_PLACEHOLDER not in text:
        text = IMAGE_PLACEHOLDER + "\n" + text
    inputs = build_inference_inputs(
        processor,
        [("user", text)],
        images,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        image_folder=args.image_folder,
    )
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    tokenizer = processor.tokenizer
    output = model.generate(
        **inputs,
        do_sample=args.temperature > 0,
        temperature=args.temperature if args.temperature > 0 else None,
        top_p=args.top_p,
        num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        noise_mode=args.noise_mode,
    )
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    return question["text"], answer


def eval_model(args: argparse.Namespace) -> None:
    set_seed(args.seed)
    processor, model = load_pretrained_model(
        args.model_path, args.model_base, device=args.device, load_8bit=args.load_8bit, load_4bit=args.load_4bit
    )
    model_id = Path(args.model_path.rstrip("/")).name
    questions = load_records(args.question_file, expected="the question JSONL file as --question-file")
    questions = get_chunk(questions, args.num_chunks, args.chunk_idx)
    os.makedirs(os.path.dirname(os.path.abspath(args.answers_file)), exist_ok=True)
    with open(args.answers_file, "w", encoding="utf-8") as out:
        for question in tqdm(questions, desc="answering"):
            prompt, answer = answer_question(model, processor, question, args)
            record = {
                "question_id": question["question_id"],
                "prompt": prompt,
                "text": answer,
                "answer_id": uuid.uuid4().hex,
                "model_id": model_id,
                "metadata": {"noise_mode": args.noise_mode, "seed": args.seed},
            }
            out.write(json.dumps(record) + "\n")
            out.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-base", default=None)
    parser.add_argument("--image-folder", default="")
    parser.add_argument("--question-file", required=True)
    parser.add_argument("--answers-file", required=True)
    parser.add_argument("--conv-mode", default="qwen2_5_vl", help="Accepted for LLaVA compatibility; Qwen's chat template is always used.")
    parser.add_argument("--num-chunks", type=int, default=1)
    parser.add_argument("--chunk-idx", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--num_beams", type=int, default=1)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--noise-mode", choices=["sample", "mean", "off"], default=None,
                        help="Noise at inference; default: the checkpoint's inference_mode.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-pixels", type=int, default=None)
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available).")
    parser.add_argument("--load-8bit", action="store_true")
    parser.add_argument("--load-4bit", action="store_true")
    return parser


def main() -> None:
    eval_model(build_parser().parse_args())


if __name__ == "__main__":
    main()
