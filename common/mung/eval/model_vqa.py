"""Answer a question jsonl one question at a time (``python -m mung.eval.model_vqa``): LLaVA's entry point of
MM-Vet and LLaVA-Bench; same inputs, outputs and prompts as ``model_vqa_loader`` at batch size 1."""

from .entry import main_for
from .questions import questions_from_jsonl
from ..commands import run_command
from ..help_text import description


def main(argv=None):
    return main_for(description(__doc__), lambda a: questions_from_jsonl(a.question_file, a.image_folder),
                    batched=False, argv=argv)


if __name__ == "__main__":
    run_command(main)
