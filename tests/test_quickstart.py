"""The quickstart (scripts/quickstart.py) end to end in --fast mode on the session tiny world, LLaVA backbone, and
the pieces of its plan (loss summary, CLI transcript, each backbone's recipe flags).

--fast runs every stage with a few steps and questions, so these tests check the plumbing and the report, not
learning (the real run's numbers are in the project notes).
"""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "quickstart.py"


def load_quickstart_module():
    if "quickstart" in sys.modules:
        return sys.modules["quickstart"]
    spec = importlib.util.spec_from_file_location("quickstart", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["quickstart"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fast_run(tiny_world, tmp_path_factory):
    """(report dict, output root) of one ``quickstart.py --fast`` run over the session tiny world."""
    world = Path(tiny_world["image_folder"]).parent
    assert (world / "manifest.json").is_file(), "the session tiny world's image folder is not at its root"
    out = tmp_path_factory.mktemp("quickstart")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--fast", "--backbone", "llava", "--tiny-world", str(world), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "llava" / "quickstart_report.json").read_text())
    return report, out, proc.stdout


@pytest.mark.slow
def test_fast_report_has_every_field(fast_run):
    report, _, _ = fast_run
    for key in ("backbone", "trainable", "loss", "seconds", "chance", "before", "after", "samples", "cli",
                "checkpoint", "base_checkpoint", "chance_overall", "plan", "recipes"):
        assert key in report, key
    for key in ("world", "base", "mung", "eval_before", "eval_after", "cli", "total"):
        assert key in report["seconds"], key
    for key in ("loss_start", "loss_end", "loss_start_mean", "loss_end_mean"):
        assert key in report["loss"]["mung"], key
    assert len(report["samples"]) == 5


@pytest.mark.slow
def test_fast_report_numbers_are_finite_and_in_range(fast_run):
    report, _, _ = fast_run
    numbers = [report["loss"][s][k] for s in ("base", "mung") for k in ("loss_start", "loss_end")]
    numbers += list(report["seconds"].values())
    numbers += [report["trainable"]["trainable_percent"], report["chance_overall"]]
    assert all(math.isfinite(x) for x in numbers), numbers
    for side in ("before", "after"):
        accs = [report[side]["overall"], *report[side]["per_family"].values()]
        assert all(0.0 <= a <= 1.0 for a in accs), (side, accs)
        assert report[side]["n"] == 5


@pytest.mark.slow
def test_fast_report_chance_matches_manifest(fast_run, tiny_world):
    report, _, _ = fast_run
    assert report["chance"] == tiny_world["chance"]
    assert set(report["before"]["per_family"]) == set(tiny_world["families"])  # one question of each family


@pytest.mark.slow
def test_fast_trainable_share_is_generator_plus_lora_plus_projector(fast_run):
    """Trainable = generator (6 d x d linears + biases, by hand) + LoRA + projector: more than the generator,
    less than the whole model, and the share is their ratio."""
    report, _, _ = fast_run
    d = 128  # hidden size of the tiny preset's Llama
    generator = 6 * d * d + 6 * d
    t = report["trainable"]
    assert generator < t["trainable_params"] < t["total_params"]
    assert t["trainable_percent"] == pytest.approx(100 * t["trainable_params"] / t["total_params"], abs=1e-3)


@pytest.mark.slow
def test_fast_checkpoint_loads_with_its_generator(fast_run):
    from llava_noise.model.builder import load_pretrained_model

    report, _, _ = fast_run
    _, model, _, _ = load_pretrained_model(report["checkpoint"], report["base_checkpoint"], "mung", device="cpu")
    assert model.get_model().noise_generator is not None
    assert report["after"]["label"].startswith("MuNG checkpoint")


@pytest.mark.slow
def test_fast_run_prints_the_report(fast_run):
    report, out, stdout = fast_run
    assert "MuNG quickstart" in stdout and report["checkpoint"] in stdout
    assert Path(report["checkpoint"]).is_relative_to(out)


def test_cli_reply_is_read_from_the_transcript():
    quickstart = load_quickstart_module()
    assert quickstart.cli_reply("USER: ASSISTANT: left\nUSER: exit...\n") == "left"
    assert quickstart.cli_reply("noise\nUSER: ASSISTANT: two circles\nUSER: exit...") == "two circles"
    with pytest.raises(ValueError, match="ASSISTANT"):
        quickstart.cli_reply("USER: exit...")


def test_loss_summary_reads_first_and_last_logged_loss(tmp_path):
    quickstart = load_quickstart_module()
    history = [{"step": s, "loss": 10.0 - s} for s in range(1, 21)] + [{"step": 20, "train_runtime": 1.0}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    summary = quickstart.loss_summary(tmp_path)
    assert summary["loss_start"] == 9.0 and summary["loss_end"] == -10.0
    assert summary["loss_start_mean"] == pytest.approx((9.0 + 8.0) / 2)  # first tenth of 20 steps = 2 steps
    assert summary["loss_end_mean"] == pytest.approx((-9.0 - 10.0) / 2)


@pytest.mark.parametrize("backbone, flag", [("llava", "--mm_projector_lr"), ("qwen", "--merger_lr")])
def test_connector_lr_reaches_each_backbones_recipe_under_its_own_flag(backbone, flag, tmp_path):
    quickstart = load_quickstart_module()
    plan = quickstart.PLANS[backbone]
    manifest = {"image_folder": "images", "llava_vision_tower": "clip"}
    env = quickstart.training_env(quickstart.BACKBONES[backbone], plan.base, "model", "data.json", manifest,
                                  tmp_path, seed=3)
    assert plan.base.projector_lr is not None  # both bases need the connector's own lr to learn shape
    assert f"{flag} {plan.base.projector_lr}" in env["EXTRA_ARGS"]
    assert "--seed 3" in env["EXTRA_ARGS"]
    other = {"--mm_projector_lr", "--merger_lr"} - {flag}
    assert not any(o in env["EXTRA_ARGS"] for o in other)
