"""Answer ScienceQA in LLaVA's conversation format (``python -m mung.eval.model_vqa_science``).

Input: a JSON list of ``{id, image?, conversations: [{from: human, value}, ...]}``; the first human turn is the
question (its ``<image>`` tag is removed and the image put first again). ``--single-pred-prompt`` appends the
instruction to answer with the option letter. Output records use ``id`` as question_id.
"""

from .entry import main_for
from .questions import science_questions
from ..commands import run_command
from ..help_text import description


def configure(parser):
    parser.add_argument("--single-pred-prompt", action="store_true",
                        help="add the instruction to answer with the option's letter")


def main(argv=None):
    return main_for(description(__doc__),
                    lambda a: science_questions(a.question_file, a.image_folder, a.single_pred_prompt),
                    configure=configure, argv=argv)


if __name__ == "__main__":
    run_command(main)
