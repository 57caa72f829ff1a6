"""``python -m mung.compare``: the paper's tables in one command (methods, ablations, efficiency), every method
trained with the same budget and evaluated the same way, over several seeds; resumable.

    python -m mung.compare --backbone llava --plan all --seeds 3 --out outputs/compare/llava        # tiny world
    python -m mung.compare --backbone qwen --plan main --seeds 1 --fast --out outputs/compare/qwen
    python -m mung.compare --backbone qwen --plan main --start Qwen2.5-VL-3B-Instruct \\
        --train-data mmpr.jsonl --image-folder images --out outputs/compare/qwen-real   # real models (GPUs)

Without ``--train-data`` it runs on the tiny world (built into OUT/world unless ``--world`` names one): a stage-1
base trained on white backgrounds, then every method from that base on the dark noisy split, evaluated on the
dark noisy eval split (60 questions per family). Writes OUT/tables.md, OUT/results.json and OUT/<table>.png;
``--list-checkpoints`` prints every finished run's checkpoint (for the benchmark scripts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..help_text import description, name_the_command
from .plan import PLAN_CHOICES, TINY, TINY_FAST, REAL, Budget, METHODS


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description(__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--backbone", required=True, help="an installed backbone (llava, qwen)")
    parser.add_argument("--plan", choices=PLAN_CHOICES, default="main",
                        help="main: the methods; ablation: the generator ablations; efficiency: time and memory; all")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per method (default 3)")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated subset of the plan's methods; known: {', '.join(METHODS)}")
    parser.add_argument("--out", required=True, help="comparison folder; a rerun resumes it")
    parser.add_argument("--fast", action="store_true",
                        help=f"tiny world: {TINY_FAST.steps} steps per method instead of {TINY.steps}")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per method (tiny default: %d)" % TINY.steps)
    parser.add_argument("--batch", type=int, default=None, help="per-device batch (tiny default: %d)" % TINY.batch)
    parser.add_argument("--base-steps", type=int, default=None, help="tiny world: steps of the stage-1 base")
    parser.add_argument("--eval-per-family", type=int, default=None,
                        help="evaluate on the first N questions of each family only (default: all)")
    parser.add_argument("--lr-search", action="store_true",
                        help="train each method at every rate of its kind of tuning's grid (seed 0), choose the rate "
                        "with the best validation overall, then train the other seeds at that rate "
                        "(mung.compare.lr_search)")
    parser.add_argument("--lr-grid", action="append", default=None, metavar="TUNING=R1,R2,...",
                        help="replace one kind of tuning's grid (full, lora, dora, noise, noise_lora); repeatable")
    tiny = parser.add_argument_group("tiny world")
    tiny.add_argument("--split", default="shift", choices=("shift", "distractor"),
                      help="shift: dark noisy backgrounds; distractor: several shapes, a question about one "
                      "(default %(default)s)")
    tiny.add_argument("--world", default=None, help="an already built tiny world (default: build OUT/world)")
    real = parser.add_argument_group("your models and data")
    real.add_argument("--start", default=None,
                      help="checkpoint every method starts from (tiny world: default a stage-1 base trained here)")
    real.add_argument("--start-projector", default=None, help="LLaVA: pretrained mm_projector.bin for --start")
    real.add_argument("--train-data", default=None, help="training file (switches off the tiny world)")
    real.add_argument("--image-folder", default=None, help="folder the training and eval image paths are relative to")
    real.add_argument("--eval-questions", default=None, help="question jsonl {question_id, image, text}")
    real.add_argument("--eval-answers", default=None, help="truth jsonl {question_id, answer, family}")
    real.add_argument("--val-questions", default=None, help="--lr-search: validation question jsonl")
    real.add_argument("--val-answers", default=None, help="--lr-search: validation truth jsonl")
    parser.add_argument("--repo", default=None, help="the MuNG repository (its scripts/ hold the recipes)")
    parser.add_argument("--list-checkpoints", action="store_true",
                        help="print method, seed, checkpoint and model base of every finished run in OUT and exit")
    return parser.parse_args(argv)


def budget_of(args: argparse.Namespace) -> Budget:
    default = REAL if args.train_data else (TINY_FAST if args.fast else TINY)
    return Budget(
        steps=args.steps if args.steps is not None else default.steps,
        batch=args.batch if args.batch is not None else default.batch,
        base_steps=args.base_steps if args.base_steps is not None else default.base_steps,
        eval_per_family=args.eval_per_family if args.eval_per_family is not None else default.eval_per_family,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    from ..files import check_output_path  # after parsing: these import torch, which --help does without
    from .runner import UnitFailed
    from .session import compare, list_checkpoints

    if args.list_checkpoints:
        return list_checkpoints(Path(args.out))
    try:
        check_output_path(args.out, "--out", {f"--{name.replace('_', '-')}": getattr(args, name) for name in (
            "start", "start_projector", "train_data", "image_folder", "eval_questions", "eval_answers")}, kind="folder")
        compare(args, budget_of(args))
    except UnitFailed as err:
        print(f"[compare] {err}\n[compare] rerun the same command to resume after fixing it.", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as err:
        print(f"[compare] {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    name_the_command()
    sys.exit(main())
