"""Answer a question jsonl with batched generation (``python -m mung.eval.model_vqa_loader``, any backbone).

Input lines: ``{question_id, image (relative to --image-folder; optional), text}``. Output lines: ``{question_id,
prompt, text, answer_id, model_id, metadata}``. ``--batch-size N`` left-pads prompts; under greedy decoding the
answers equal those of batch size 1.
"""

from .entry import main_for
from .questions import questions_from_jsonl
from ..commands import run_command
from ..help_text import description


def main(argv=None):
    return main_for(description(__doc__), lambda a: questions_from_jsonl(a.question_file, a.image_folder), argv=argv)


if __name__ == "__main__":
    run_command(main)
