"""Answer a question jsonl with a DataLoader and batched generation (``python -m llava_noise.eval.model_vqa_loader``).

Input lines: {question_id, image (relative to --image-folder; optional), text}. Output lines: {question_id,
prompt, text, answer_id, model_id, metadata}. ``--batch-size N`` left-pads prompts; under greedy decoding the
answers equal those of batch size 1.
"""

import argparse
import os

from .chunking import add_chunk_args, get_chunk
from .inference import Question, add_generation_args, add_model_args, answer_questions, load_for_inference
from ..jsonl import read_jsonl


def questions_from_jsonl(path, image_folder):
    questions = []
    for i, row in enumerate(read_jsonl(path), start=1):
        if "question_id" not in row or "text" not in row:
            raise ValueError(f"{path}: question {i} needs 'question_id' and 'text' fields")
        image = os.path.join(image_folder, row["image"]) if row.get("image") else None
        questions.append(Question(row["question_id"], row["text"], image))
    return questions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(parser)
    add_generation_args(parser)
    add_chunk_args(parser)
    parser.add_argument("--image-folder", type=str, default="")
    parser.add_argument("--question-file", type=str, required=True)
    parser.add_argument("--answers-file", type=str, default="answer.jsonl")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers loading images")
    args = parser.parse_args(argv)
    questions = get_chunk(questions_from_jsonl(args.question_file, args.image_folder), args.num_chunks, args.chunk_idx)
    loaded = load_for_inference(args)
    answer_questions(questions, loaded, args, args.answers_file, args.batch_size, args.num_workers)


if __name__ == "__main__":
    main()
