"""What every answering entry point shares: its flags, loading the model and answering a question list."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from ..answer_files import answers_lock, check_answers_path
from ..chunking import get_chunk
from ..flag_choices import ON_BAD_SAMPLE
from ..cli_args import (
    add_backbone_args,
    add_chunk_args,
    add_generation_args,
    add_model_args,
    generation_settings,
    load_from_args,
)

if TYPE_CHECKING:  # the model code (torch) loads after the flags are read: --help imports none of it
    from ..answering import Question


def answering_parser(description: str, batched: bool = True, question_help: str = "the question file") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    add_model_args(parser)
    add_generation_args(parser)
    add_chunk_args(parser)
    add_backbone_args(parser)
    parser.add_argument("--image-folder", type=str, default="", help="folder the questions' image paths are relative to")
    parser.add_argument("--question-file", type=str, required=True, help=question_help)
    parser.add_argument("--answers-file", type=str, default="answer.jsonl",
                        help="written at the end (answers so far go to <answers-file>.partial, which a rerun with the "
                             "same settings continues)")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="start over instead of continuing an interrupted run's <answers-file>.partial")
    parser.add_argument("--on_bad_sample", "--on-bad-sample", dest="on_bad_sample", choices=ON_BAD_SAMPLE,
                        default="skip", help="a question that cannot be answered (unreadable image, <image> in its "
                        "text, too long): skip it (counted, reported, a record with metadata.skipped) or raise")
    if batched:
        parser.add_argument("--batch-size", type=int, default=1, help="questions per generate call (left-padded)")
        parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers loading images")
    return parser


def run_answering(
    args: argparse.Namespace, read_questions: Callable[[argparse.Namespace], Sequence[Question]]
) -> list[dict]:
    """Check the answers path (``answer_files.check_answers_path``) and take its lock, read (and chunk) the questions
    before loading anything, load the model, answer, write the answers file, and say how many, where, how long."""
    from ..answering import answer_questions
    from ..context import prompt_budget

    start = time.perf_counter()
    check_answers_path(args.answers_file, {"--question-file": args.question_file, "--image-folder": args.image_folder,
                                           "--model-path": args.model_path, "--model-base": args.model_base})
    with answers_lock(args.answers_file):
        questions = get_chunk(read_questions(args), args.num_chunks, args.chunk_idx)
        loaded = load_from_args(args)
        settings = generation_settings(args)
        prompt_budget(loaded, settings)  # a --max_new_tokens the context cannot hold fails before any answer
        loading = time.perf_counter() - start
        records = answer_questions(
            questions, loaded, settings, args.answers_file,
            batch_size=getattr(args, "batch_size", 1), num_workers=getattr(args, "num_workers", 0), seed=args.seed,
            on_bad_sample=args.on_bad_sample, resume=args.resume,
        )
    print(finished_line(records, args.answers_file, time.perf_counter() - start, loading), flush=True)
    return records


def finished_line(records: Sequence[dict], answers_file: str, seconds: float, loading: float) -> str:
    """What a finished run says on screen: how many answers, where, how long."""
    skipped = sum(1 for record in records if (record.get("metadata") or {}).get("skipped"))
    skips = f" ({skipped} of {len(records)} questions skipped: see metadata.skipped)" if skipped else ""
    answered = len(records) - skipped
    return (f"{answered} answer{'' if answered == 1 else 's'}{skips} written to {answers_file} in {seconds:.1f} s "
            f"(loading {loading:.1f} s).")


def main_for(description: str, read_questions, batched: bool = True, configure: Optional[Callable] = None,
             argv: Optional[Sequence[str]] = None) -> list[dict]:
    parser = answering_parser(description, batched)
    if configure is not None:
        configure(parser)
    return run_answering(parser.parse_args(argv), read_questions)
