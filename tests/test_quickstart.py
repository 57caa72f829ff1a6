"""The quickstart (scripts/quickstart.py) end to end in --fast mode on the session tiny world, LLaVA backbone, and
the pieces of its plan (loss summary, CLI transcript, each backbone's recipe flags).

--fast runs every stage with a few steps and questions, so these tests check the plumbing and the report, not
learning (the real run's numbers are in the project notes).
"""

import importlib.util
import json
import math
import os
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
    plan = quickstart.comparison_plan(backbone)
    manifest = {"image_folder": "images", "llava_vision_tower": "clip"}
    env = quickstart.training_env(quickstart.BACKBONES[backbone], plan.base, "model", "data.json", manifest,
                                  tmp_path, seed=3)
    assert plan.base.projector_lr is not None  # both bases need the connector's own lr to learn shape
    assert f"{flag} {plan.base.projector_lr}" in env["EXTRA_ARGS"]
    assert "--seed 3" in env["EXTRA_ARGS"]
    other = {"--mm_projector_lr", "--merger_lr"} - {flag}
    assert not any(o in env["EXTRA_ARGS"] for o in other)


@pytest.mark.parametrize("backbone, tuning", [("llava", "noise_lora"), ("qwen", "noise")])
def test_the_quickstart_trains_at_the_rates_the_comparison_chose(backbone, tuning):
    """The backbone's comparison defaults are the rates ``mung.compare --lr-search`` chose, with that command
    stored beside them; the quickstart's MuNG and control train at them and at the budget they were chosen for."""
    from mung.backbones import by_name
    from mung.compare.plan import TINY_FAST

    quickstart = load_quickstart_module()
    tiny = by_name(backbone).comparison.tiny
    plan = quickstart.comparison_plan(backbone)
    assert "--lr-search" in tiny.rates_chosen_by and f"--backbone {backbone}" in tiny.rates_chosen_by
    assert (plan.mung.lr, plan.control.lr) == (tiny.learning_rates[tuning], tiny.learning_rates["lora"])
    assert plan.mung.ng_lr == (tiny.generator_lr if tuning == "noise_lora" else None)
    assert plan.mung.steps == plan.control.steps == TINY_FAST.steps and plan.base.steps == tiny.base_steps


@pytest.mark.slow
def test_fast_report_has_the_control_row_beside_mung(fast_run):
    """The control is the same run without the generator: LLaVA's MuNG trains generator + LoRA + projector, the
    control LoRA + projector, so they differ by exactly the generator (6 d x d linears + biases, by hand)."""
    report, _, stdout = fast_run
    d = 128
    assert report["trainable"]["trainable_params"] - report["control_trainable"]["trainable_params"] == 6 * d * d + 6 * d
    assert report["control"]["n"] == report["after"]["n"] == 5
    assert report["over_seeds"]["after"]["seeds"] == 1
    assert report["over_seeds"]["after"]["overall"] == {"mean": report["after"]["overall"], "std": None}
    assert report["over_seeds"]["control"]["overall"]["mean"] == report["control"]["overall"]
    for key in ("control", "eval_control", "noise_map"):
        assert key in report["seconds"], key
    assert "control" in stdout and "LoRA r32, no generator" in stdout


@pytest.mark.slow
def test_fast_run_writes_the_noise_map_and_prints_what_to_run_next(fast_run):
    report, out, stdout = fast_run
    noise_map = Path(report["noise_map"])
    assert noise_map.is_relative_to(out) and noise_map.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(noise_map) in stdout
    assert set(report["next"]) == {"evaluate", "chat", "web demo", "compare"}
    assert "mung serve web --model-path" in stdout and "mung compare --backbone llava" in stdout
    assert f"--start {report['base_checkpoint']}" in report["next"]["compare"]
    answers = os.path.join(os.path.dirname(report["checkpoint"]), "answers.jsonl")  # per backbone, not shared
    assert report["next"]["evaluate"].count(f"--answers-file {answers}") == 2


def test_per_family_counts_are_printed(tmp_path):
    quickstart = load_quickstart_module()
    scores = {"overall": 0.5, "per_family": {"colour": 1.0, "shape": 0.0}, "n": 4, "n_per_family": {"colour": 3, "shape": 1}}
    stats = quickstart.over_seeds([scores, {**scores, "overall": 0.7, "per_family": {"colour": 0.5, "shape": 0.5}}])
    assert stats["overall"]["mean"] == pytest.approx(0.6) and stats["overall"]["std"] == pytest.approx(0.1414214)
    report = {"backbone": "llava", "fast": False,
              "plan": {k: {"steps": 1, "lr": 2e-3, "ng_lr": 2e-3 if k == "mung" else None}
                       for k in ("base", "mung", "control")},
              "rates_chosen_by": "python -m mung.compare --backbone llava --lr-search",
              "recipes": {"base": "b.sh", "mung": "m.sh", "control": "c.sh"}, "tuned": "t",
              "loss": {k: {"loss_start": 1.0, "loss_end": 0.5, "loss_start_mean": 1.25, "loss_end_mean": 0.75}
                       for k in ("base", "mung", "control")},
              "base_on_white": None, "trainable": {"trainable_params": 10, "total_params": 100, "trainable_percent": 10.0},
              "control_trainable": {"trainable_params": 5, "total_params": 100, "trainable_percent": 5.0},
              "before": {"label": "b", **scores}, "control": {"label": "c", **scores}, "after": {"label": "a", **scores},
              "over_seeds": {"after": stats, "control": stats}, "chance": {"colour": 1 / 6, "shape": 1 / 3},
              "chance_overall": 0.2, "eval_split": "shift", "samples": [], "seconds": {"total": 1.0},
              "cli": {"question": "q", "reply": "r", "truth": "t"}, "noise_map": "n.png", "checkpoint": "c",
              "base_checkpoint": "b", "next": {"compare": "python -m mung.compare"}}
    text = quickstart.format_report(report)
    assert "4 questions (3 colour, 1 shape)" in text
    assert "    colour       3   16.7%  100.0%  75.0 ± 35.4%  75.0 ± 35.4%" in text
    assert "mean ± std over 2 seeds" in text
    assert ("rates        : MuNG 0.002 (generator 0.002), control 0.002; chosen on the validation split by "
            "`python -m mung.compare --backbone llava --lr-search`") in text
    assert "loss stage 2 : MuNG 1.250 -> 0.750; control 1.250 -> 0.750 (mean over the first / last tenth" in text
    one_seed = quickstart.over_seeds([scores])
    text = quickstart.format_report({**report, "over_seeds": {"after": one_seed, "control": one_seed}})
    assert "    colour       3   16.7%  100.0%  100.0%  100.0%" in text and "±" not in text
