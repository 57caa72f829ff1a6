"""Convert a generator-only checkpoint (noise_generator.safetensors + its config) into a MuNG peft adapter
(adapter_config.json + adapter_model.safetensors) of a base VLM, or a MuNG adapter back into a generator-only
checkpoint. The direction follows from the files in --source.

    mung convert adapter --source outputs/gemma3-mung --model-base $B --output-dir outputs/gemma3-mung-peft
    mung convert adapter --source outputs/gemma3-mung-peft --output-dir outputs/gemma3-mung-again
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .commands import run_command
from .help_text import description


def check_output_dir(output_dir: str, inputs: dict) -> None:
    """``output_dir`` is a new (or empty) folder, neither an input nor inside one (nothing read is overwritten)."""
    out = Path(output_dir).resolve()
    for flag, source in inputs.items():
        if source and (out == Path(source).resolve() or Path(source).resolve() in out.parents):
            raise ValueError(f"--output-dir {output_dir} is {flag} {source} or inside it; name a new folder.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--output-dir {output_dir} exists and is not an empty folder; name a new folder.")


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--source", required=True, help="a generator-only checkpoint or a MuNG peft adapter folder")
    parser.add_argument("--output-dir", required=True, help="where the other format is written (a new folder)")
    parser.add_argument("--model-base", help="the VLM the generator was trained on (needed to write an adapter; "
                        "recorded as the adapter's base_model_name_or_path)")
    args = parser.parse_args(argv)
    check_output_dir(args.output_dir, {"--source": args.source, "--model-base": args.model_base})
    from noise_generator.peft_method.convert import convert

    written, weights = convert(args.source, args.output_dir, args.model_base)
    what = "MuNG peft adapter" if written == "adapter" else "generator-only checkpoint"
    print(f"wrote a {what}: {weights}")
    return weights


if __name__ == "__main__":
    run_command(main)
