"""Tiny generator-training runs of either backbone on the tiny world, in this process or as a child process (the
entry point as a user runs it), for the tests of what a run does around training (bad samples, re-runs)."""

import json
import subprocess
import sys
from pathlib import Path

from distributed_utils import REPO, child_env

MODULES = {"llava": "llava_noise.train.train", "qwen": "qwen_noise.train.train"}


def tiny_argv(backbone, world, data_path, image_folder, out, *extra):
    """Flags of a tiny run: generator (4 heads) on the frozen model, LLaVA with its projector (pretraining mode)."""
    common = ["--data_path", str(data_path), "--image_folder", str(image_folder), "--output_dir", str(out),
              "--ng_heads", "4", "--learning_rate", "1e-3", "--logging_steps", "1", "--report_to", "none",
              "--save_steps", "1000", "--seed", "0", "--model_max_length", "256", "--use_cpu", "True",
              "--disable_tqdm", "True", *extra]
    if backbone == "qwen":
        return ["--model_name_or_path", world["qwen_model"], "--tune", "noise", *common]
    return ["--model_name_or_path", world["llava_llm"], "--vision_tower", world["llava_vision_tower"],
            "--version", "v1", "--tune_mm_mlp_adapter", "True", "--noise_generator", "True",
            "--mm_projector_type", "mlp2x_gelu", "--mm_vision_select_layer", "-2", "--image_aspect_ratio", "pad",
            "--lazy_preprocess", "True", *common]


def tiny_data(world, backbone, folder: Path, count: int = 4) -> Path:
    """The first ``count`` training records of the backbone's tiny-world data, written to ``folder/data.json``."""
    key = "llava_train_json" if backbone == "llava" else "qwen_train_json"
    path = Path(folder) / "data.json"
    path.write_text(json.dumps(json.loads(Path(world[key]).read_text())[:count]))
    return path


def train_in_process(backbone, argv, callbacks=()):
    """The backbone's ``train(argv, callbacks)``; returns what it returns."""
    if backbone == "qwen":
        from qwen_noise.train.train import train
    else:
        from llava_noise.train.train import train
    return train(argv, callbacks=callbacks)


def train_as_child(backbone, argv, timeout=300) -> subprocess.CompletedProcess:
    """``python -m <entry point> ARGV`` from the repository root; stdout and stderr captured."""
    return subprocess.run([sys.executable, "-m", MODULES[backbone], *argv], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


def folder_snapshot(folder) -> dict:
    """{relative path: (size, mtime_ns, bytes)} of every file under ``folder``."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}
