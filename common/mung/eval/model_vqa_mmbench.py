"""Answer MMBench / MMBench-CN from its TSV (``python -m mung.eval.model_vqa_mmbench``).

Each row: hint (optional), question, options A–D (missing ones skipped), a base64 image. The message is
"[hint\\n]question\\nA. …\\nB. …" plus, with ``--single-pred-prompt``, the instruction to answer with the letter
(Chinese with ``--lang cn``). ``--all-rounds`` asks once per rotation of the options (for circular evaluation).
Output records add round_id, options and option_char.
"""

from .entry import main_for
from .questions import SINGLE_PRED_PROMPT, mmbench_questions
from ..commands import run_command
from ..help_text import description


def configure(parser):
    parser.add_argument("--all-rounds", action="store_true",
                        help="ask once per rotation of the options (circular evaluation)")
    parser.add_argument("--single-pred-prompt", action="store_true",
                        help="add the instruction to answer with the option's letter")
    parser.add_argument("--lang", type=str, default="en", choices=sorted(SINGLE_PRED_PROMPT),
                        help="language of that instruction (cn for MMBench-CN)")


def main(argv=None):
    return main_for(description(__doc__),
                    lambda a: mmbench_questions(a.question_file, a.all_rounds, a.single_pred_prompt, a.lang),
                    configure=configure, argv=argv)


if __name__ == "__main__":
    run_command(main)
