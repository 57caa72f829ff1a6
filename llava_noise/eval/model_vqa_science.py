"""Answer ScienceQA in LLaVA's conversation format (``python -m llava_noise.eval.model_vqa_science``).

Input: a JSON list of {id, image?, conversations: [{from: human, value}, ...]}; the first human turn is the
question (its ``<image>`` tag is removed and the image put first again). ``--single-pred-prompt`` appends the
instruction to answer with the option letter. Output records use ``id`` as question_id.
"""

import argparse
import os

from .chunking import add_chunk_args, get_chunk
from .inference import Question, add_generation_args, add_model_args, answer_questions, load_for_inference
from ..jsonl import read_json

SINGLE_PRED_PROMPT = "Answer with the option's letter from the given choices directly."


def science_questions(path, image_folder, single_pred_prompt):
    questions = []
    for i, row in enumerate(read_json(path)):
        try:
            text = row["conversations"][0]["value"].replace("<image>", "").strip()
        except (KeyError, IndexError, TypeError) as err:
            raise ValueError(f"{path}: item {i} (id {row.get('id')!r}) has no first conversation turn") from err
        if single_pred_prompt:
            text = text + "\n" + SINGLE_PRED_PROMPT
        image = os.path.join(image_folder, row["image"]) if row.get("image") else None
        prompt = ("<image>\n" + text) if image else text
        questions.append(Question(row["id"], text, image, prompt=prompt))
    return questions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(parser)
    add_generation_args(parser)
    add_chunk_args(parser)
    parser.add_argument("--image-folder", type=str, default="")
    parser.add_argument("--question-file", type=str, required=True, help="e.g. llava_test_CQM-A.json")
    parser.add_argument("--answers-file", type=str, default="answer.jsonl")
    parser.add_argument("--single-pred-prompt", action="store_true")
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args(argv)
    questions = science_questions(args.question_file, args.image_folder, args.single_pred_prompt)
    questions = get_chunk(questions, args.num_chunks, args.chunk_idx)
    answer_questions(questions, load_for_inference(args), args, args.answers_file, args.batch_size)


if __name__ == "__main__":
    main()
