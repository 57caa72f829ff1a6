"""python -m tiny_world --out DIR [--preset tiny|small] [--seed N] [--version 3|4|5] [--force] [--families all|NAME,NAME]"""

from __future__ import annotations

import argparse
import sys

from .builder import build
from .families import build_families, family_names
from .manifest import BUILDER_VERSION, VERSIONS
from .presets import PRESETS


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Build the tiny offline world (models + synthetic VQA data) that MuNG's tests and demos use.",
    )
    parser.add_argument("--out", required=True, help="folder to build the world into")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model and data sizes")
    parser.add_argument("--seed", type=int, default=0, help="fixes all data and weights (non-negative)")
    parser.add_argument("--version", type=int, default=BUILDER_VERSION, choices=VERSIONS,
                        help="builder version (default %(default)s; 4: the CLIP tower's position embeddings as "
                        "initialised; 3: also without the validation and distractor splits)")
    parser.add_argument("--force", action="store_true", help="rebuild even if DIR already holds this world")
    parser.add_argument("--families", default=None,
                        help="also build tiny checkpoints of transformers VLM families into DIR/families: 'all' or "
                        f"names separated by commas ({', '.join(family_names())})")
    args = parser.parse_args(argv)
    manifest = build(args.out, preset=args.preset, seed=args.seed, force=args.force, version=args.version)
    print(f"[tiny_world] manifest: {args.out}/manifest.json ({manifest['counts']})")
    if args.families:
        names = None if args.families == "all" else [n.strip() for n in args.families.split(",") if n.strip()]
        built = build_families(args.out, names)
        print(f"[tiny_world] families: {', '.join(built)}")


if __name__ == "__main__":
    sys.argv[0] = "python -m tiny_world"  # argparse's usage line: the command, not __main__.py
    main()
