"""Answer MMBench / MMBench-CN from its TSV (``python -m llava_noise.eval.model_vqa_mmbench``).

Each row: hint (optional), question, options A–D (missing ones skipped), a base64 image. The message is
"[hint\\n]question\\nA. …\\nB. …" plus, with ``--single-pred-prompt``, the instruction to answer with the letter
(Chinese with ``--lang cn``). ``--all-rounds`` asks once per rotation of the options (for circular evaluation).
Output records add round_id, options and option_char.
"""

import argparse
import functools

from .chunking import add_chunk_args, get_chunk
from .inference import (
    Question,
    add_generation_args,
    add_model_args,
    answer_questions,
    decode_base64_image,
    load_for_inference,
)
from .mmbench_tsv import OPTION_LETTERS, is_missing, options_of, read_mmbench_tsv

SINGLE_PRED_PROMPT = {
    "en": "Answer with the option's letter from the given choices directly.",
    "cn": "请直接回答选项字母。",
}


def mmbench_questions(path, all_rounds, single_pred_prompt, lang):
    _, rows = read_mmbench_tsv(path)
    questions = []
    for row in rows:
        options = options_of(row)
        letters = OPTION_LETTERS[: len(options)]
        image = functools.partial(decode_base64_image, row["image"], f"{path} index {row['index']}") \
            if not is_missing(row.get("image")) else None
        for round_id in range(len(options) if all_rounds else 1):
            text = row["question"]
            if not is_missing(row.get("hint")):
                text = row["hint"] + "\n" + text
            for letter, option in zip(OPTION_LETTERS, options):
                text += "\n" + letter + ". " + option
            if single_pred_prompt:
                text += "\n" + SINGLE_PRED_PROMPT[lang]
            index = int(row["index"]) if row["index"].lstrip("-").isdigit() else row["index"]
            questions.append(Question(index, text, image, prompt=text, extra={
                "round_id": round_id, "options": list(options), "option_char": list(letters)}))
            options = options[1:] + options[:1]
            letters = letters[1:] + letters[:1]
    return questions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(parser)
    add_generation_args(parser)
    add_chunk_args(parser)
    parser.add_argument("--question-file", type=str, required=True, help="the MMBench TSV")
    parser.add_argument("--answers-file", type=str, default="answer.jsonl")
    parser.add_argument("--all-rounds", action="store_true")
    parser.add_argument("--single-pred-prompt", action="store_true")
    parser.add_argument("--lang", type=str, default="en", choices=sorted(SINGLE_PRED_PROMPT))
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args(argv)
    questions = mmbench_questions(args.question_file, args.all_rounds, args.single_pred_prompt, args.lang)
    questions = get_chunk(questions, args.num_chunks, args.chunk_idx)
    answer_questions(questions, load_for_inference(args), args, args.answers_file, args.batch_size)


if __name__ == "__main__":
    main()
