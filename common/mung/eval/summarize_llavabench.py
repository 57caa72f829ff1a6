"""Summarise LLaVA-Bench GPT review files (``python -m mung.eval.summarize_llavabench``).

The reviews come from a GPT-4 judge that compares each answer with a reference answer; running that judge needs
network access and an API key, so it is NOT part of this project and is not run here — produce the review
jsonl elsewhere (one line per question with ``question_id``, ``category`` and ``tuple``: [reference score,
model score]) and summarise it with this script. Per category and overall it prints: relative score
(100·model/reference), reference score ×10, model score ×10.
"""

import argparse
import glob
import os

from ..commands import run_command
from ..files import read_records
from ..help_text import description


def summarize_reviews(reviews, ignore=()):
    """{category: (relative, reference×10, model×10)}, with "all" over every review."""
    scores = {}
    for r in reviews:
        if str(r["question_id"]) in ignore:
            continue
        pair = r.get("tuple", r.get("score"))
        if pair is None or len(pair) != 2:
            raise ValueError(f"review for question {r['question_id']!r} has no [reference, model] 'tuple'/'score'")
        scores.setdefault("all", []).append(pair)
        if "category" in r:
            scores.setdefault(r["category"], []).append(pair)
    out = {}
    for category, pairs in sorted(scores.items()):
        ref = sum(p[0] for p in pairs) / len(pairs)
        model = sum(p[1] for p in pairs) / len(pairs)
        out[category] = (round(100 * model / ref, 1), round(10 * ref, 1), round(10 * model, 1))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("-d", "--dir", default=None, help="folder of review jsonl files")
    parser.add_argument("-v", "--version", default=None, help="only files whose name contains this")
    parser.add_argument("-s", "--select", nargs="*", default=None, help="only files whose name contains one of these")
    parser.add_argument("-f", "--files", nargs="*", default=[], help="review jsonl files to summarise (besides --dir)")
    parser.add_argument("-i", "--ignore", nargs="*", default=[], help="question ids to leave out")
    args = parser.parse_args(argv)
    files = list(args.files)
    if args.dir:
        pattern = f"*{args.version}*.jsonl" if args.version else "*.jsonl"
        files += sorted(glob.glob(os.path.join(args.dir, pattern)))
    if args.select:
        files = [f for f in files if any(s in os.path.basename(f) for s in args.select)]
    if not files:
        parser.error("no review files: give -f FILE... or -d DIR (reviews need the GPT judge, which needs network)")
    for path in files:
        print(os.path.basename(path).replace(".jsonl", ""))
        for category, (rel, ref, model) in summarize_reviews(read_records(path, expected="a review jsonl"), set(args.ignore)).items():
            print(f"  {category:<12} {rel:6.1f} {ref:6.1f} {model:6.1f}")


if __name__ == "__main__":
    run_command(main)
