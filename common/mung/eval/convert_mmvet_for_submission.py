"""MM-Vet answers → submission json ``{"v1_<question_id>": answer}``.

The json is what MM-Vet's GPT-4 grader (online, needs network; not run here) takes.
"""

import argparse

from ..commands import run_command
from ..files import check_output_path, read_records, write_json
from ..help_text import description


def mmvet_submission(results):
    return {f"v1_{r['question_id']}": r["text"] for r in results}


def main(argv=None):
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--src", required=True, help="answers jsonl (model_vqa output)")
    parser.add_argument("--dst", required=True, help="submission json to write")
    args = parser.parse_args(argv)
    check_output_path(args.dst, "--dst", {"--src": args.src})
    write_json(args.dst, mmvet_submission(read_records(args.src, expected="the answers file (--src)")), indent=2)


if __name__ == "__main__":
    run_command(main)
