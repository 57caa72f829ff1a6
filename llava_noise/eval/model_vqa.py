"""Answer a question jsonl one question at a time (``python -m llava_noise.eval.model_vqa``).

The original entry point used by MM-Vet and LLaVA-Bench; same inputs, outputs and prompt path as
``model_vqa_loader`` at batch size 1, without image-loading workers.
"""

import argparse

from .chunking import add_chunk_args, get_chunk
from .inference import add_generation_args, add_model_args, answer_questions, load_for_inference
from .model_vqa_loader import questions_from_jsonl


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(parser)
    add_generation_args(parser)
    add_chunk_args(parser)
    parser.add_argument("--image-folder", type=str, default="")
    parser.add_argument("--question-file", type=str, required=True)
    parser.add_argument("--answers-file", type=str, default="answer.jsonl")
    args = parser.parse_args(argv)
    questions = get_chunk(questions_from_jsonl(args.question_file, args.image_folder), args.num_chunks, args.chunk_idx)
    answer_questions(questions, load_for_inference(args), args, args.answers_file, batch_size=1, num_workers=0)


if __name__ == "__main__":
    main()
