"""The ``mung`` command: its help lists every command in one line each without importing torch or transformers,
each subcommand runs its module's own ``main`` with the arguments unchanged, ``--config FILE.yaml`` gives flags
(the command line wins; unknown keys and bad values name the file and the key), ``train`` picks the backbone from
the model folder, and a user's mistake is one line with exit status 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mung import front
from mung.subcommands import COMMANDS, TRAIN, ByBackbone, Group, Leaf

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers")
HELPS = [["--help"], *[[name, "--help"] for name, node in COMMANDS.items() if not isinstance(node, Leaf)]]


def run_mung(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "mung", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_the_helps_of_mung_and_its_groups_import_neither_torch_nor_transformers():
    """The bound on import work, not a timed test: every help printed here comes before any heavy import."""
    script = ("import sys\nfrom mung.front import main\n"
              f"for argv in {HELPS!r}:\n    main(argv)\n"
              f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().splitlines()[-1] == "HEAVY []"


# Commands that load no model read and write files only: their own --help (the module's parser) needs no torch either.
LIGHT_LEAVES = [["score", name] for name in COMMANDS["score"].children] + [
    ["convert", name] for name in COMMANDS["convert"].children] + [["compare"]]


def helps_in_one_process(leaves: list, heavy: tuple) -> subprocess.CompletedProcess:
    """``mung LEAF --help`` for every leaf in one fresh process, then which of ``heavy`` it had imported."""
    script = ("import sys\nfrom mung.front import main\n"
              f"for argv in {leaves!r}:\n"
              "    try:\n        main(argv + ['--help'])\n    except SystemExit as stop:\n        assert stop.code == 0\n"
              f"print('HEAVY', sorted(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_the_helps_of_commands_that_load_no_model_import_no_torch():
    done = helps_in_one_process(LIGHT_LEAVES, HEAVY)
    assert done.stdout.count("usage: mung ") == len(LIGHT_LEAVES)
    assert done.stdout.rstrip().splitlines()[-1] == "HEAVY []"


# Commands that load a model read their flags first: torch, transformers and gradio load after parsing, so their
# --help imports none of them (the backbones' own flags come from the light mung.inference_flags entry points).
MODEL_LEAVES = [["eval", name] for name in COMMANDS["eval"].children] + [
    ["chat"], ["serve", "web"], ["serve", "api"], ["visualize"], ["world"]]
MODEL_MODULES = ["mung.eval.model_vqa_loader", "mung.eval.model_vqa", "mung.eval.model_vqa_science",
                 "mung.eval.model_vqa_mmbench", "mung.eval.run_query", "mung.serve.cli", "mung.serve.web", "mung.serve.api",
                 "mung.visualize", "tiny_world", "qwen_noise.data.convert_mmpr"]
HEAVY_OR_GRADIO = HEAVY + ("gradio",)


def test_the_helps_of_commands_that_load_a_model_import_no_torch_transformers_or_gradio():
    done = helps_in_one_process(MODEL_LEAVES, HEAVY_OR_GRADIO)
    assert done.stdout.count("usage: mung ") == len(MODEL_LEAVES)
    assert done.stdout.count("Qwen2.5-VL: lower bound of image pixels") == len(MODEL_LEAVES) - 1  # world loads none
    assert done.stdout.rstrip().splitlines()[-1] == "HEAVY []"


def test_python_dash_m_help_of_the_model_commands_works_and_imports_no_torch():
    """As ``python -m MODULE --help`` runs them (runpy, ``__main__``), all in one process."""
    script = ("import runpy, sys\n"
              f"for module in {MODEL_MODULES!r}:\n"
              "    sys.argv = [module, '--help']\n"
              "    try:\n        runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
              "    except SystemExit as stop:\n        assert stop.code in (0, None), (module, stop.code)\n"
              f"print('HEAVY', sorted(m for m in {HEAVY_OR_GRADIO!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("usage: ") == len(MODEL_MODULES)
    assert done.stdout.rstrip().splitlines()[-1] == "HEAVY []"


@pytest.mark.parametrize("argv", HELPS, ids=lambda argv: " ".join(argv))
def test_each_help_lists_its_choices_one_line_each(argv, capsys):
    front.main(argv)
    lines = capsys.readouterr().out.splitlines()
    node = COMMANDS[argv[0]] if len(argv) == 2 else None
    entries = node.children if node is not None else COMMANDS
    for name, child in entries.items():
        assert f"  {name:<{front.WIDTH}}{child.summary}" in lines


def test_python_dash_m_mung_and_the_console_script_are_the_same_front():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'mung = "mung.front:entry"' in pyproject
    done = run_mung("--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: mung COMMAND")


def tiny_answers(tiny_world, folder: Path, right: int) -> tuple[str, str, int]:
    """An answers file whose first ``right`` answers are the truth and the rest a word that is never an answer."""
    truth = tiny_world["shift_eval_answers"]
    records = [json.loads(line) for line in open(truth, encoding="utf-8")]
    path = folder / f"answers-{right}.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        for i, record in enumerate(records):
            text = record["answer"] if i < right else "zebra"
            out.write(json.dumps({"question_id": record["question_id"], "text": text}) + "\n")
    return str(path), truth, len(records)


def test_score_runs_the_tiny_world_scorer_with_the_arguments_unchanged(tiny_world, tmp_path):
    answers, truth, n = tiny_answers(tiny_world, tmp_path, right=30)
    scores = front.main(["score", "tiny-world", "--answers-file", answers, "--truth-file", truth])
    assert scores["n"] == n and scores["overall"] == pytest.approx(30 / n)


def test_a_leafs_usage_line_names_the_mung_command(capsys):
    with pytest.raises(SystemExit) as stopped:
        front.main(["score", "tiny-world", "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert "usage: mung score tiny-world " in out
    assert out.splitlines()[0].startswith("mung score tiny-world: " + COMMANDS["score"].children["tiny-world"].summary)


def test_a_config_file_gives_the_flags_and_the_command_line_wins(tiny_world, tmp_path):
    wrong, truth, n = tiny_answers(tiny_world, tmp_path, right=0)
    right, _, _ = tiny_answers(tiny_world, tmp_path, right=n)
    config = tmp_path / "score.yaml"
    config.write_text(f"answers-file: {wrong}\ntruth_file: {truth}\n--output-file: {tmp_path / 'scores.json'}\n")
    from_file = front.main(["score", "tiny-world", "--config", str(config)])
    assert from_file["overall"] == 0.0
    assert json.loads((tmp_path / "scores.json").read_text())["overall"] == 0.0
    overridden = front.main(["score", "tiny-world", "--answers-file", right, f"--config={config}"])
    assert overridden["overall"] == 1.0


def test_an_unknown_config_key_names_the_file_and_the_key(tmp_path):
    config = tmp_path / "score.yaml"
    config.write_text("answers-file: a.jsonl\ntruth-file: t.jsonl\ncolour: red\n")
    with pytest.raises(ValueError, match=rf"^{config}: unknown key 'colour': `mung score tiny-world` has no flag "
                                         r"--colour"):
        front.main(["score", "tiny-world", "--config", str(config)])


def test_a_bad_config_value_names_the_file_and_the_key(tmp_path):
    config = tmp_path / "world.yaml"
    config.write_text(f"out: {tmp_path / 'w'}\nseed: many\n")
    with pytest.raises(ValueError, match=rf"^{config}: key 'seed': invalid int value: 'many'"):
        front.main(["world", "--config", str(config)])
    assert not (tmp_path / "w").exists()


def test_a_config_switch_is_given_by_true_and_left_out_by_false(tmp_path):
    config = tmp_path / "c.yaml"
    import argparse

    from mung.config_file import flag_tokens

    parser = argparse.ArgumentParser(prog="p")
    parser.add_argument("--force", action="store_true", help="x")
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="x")
    parser.add_argument("--sizes", type=int, nargs="+", help="x")
    assert flag_tokens(parser, {"force": True, "no_resume": False, "sizes": [1, 2]}, str(config)) == [
        "--force", "--sizes", "1", "2"]
    with pytest.raises(ValueError, match=r"key 'force' is a switch; give it true or false"):
        flag_tokens(parser, {"force": "yes"}, str(config))


def test_a_config_file_that_is_not_a_mapping_is_refused_with_its_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("out: a\n  seed: [1\n")
    with pytest.raises(ValueError, match=rf"^{config}:2: not valid YAML"):
        front.main(["world", "--config", str(config)])
    config.write_text("- out\n- a\n")
    with pytest.raises(ValueError, match=rf"^{config}: holds a list, not a mapping"):
        front.main(["world", "--config", str(config)])


def test_train_picks_the_backbone_that_serves_the_model_folder(tiny_world, vlm_families, tmp_path):
    assert front.backbone_of_folder(TRAIN, tiny_world["qwen_model"]) == "qwen"
    assert front.backbone_of_folder(TRAIN, vlm_families["gemma3"]) == "vlm"
    assert front.backbone_of_folder(TRAIN, tiny_world["llava_llm"]) == "llava"  # LLaVA's stage 1 starts from an LLM
    (tmp_path / "config.json").write_text('{"model_type": "mllama"}')
    with pytest.raises(ValueError, match=r"no installed MuNG backbone serves .* Name the backbone with --backbone"):
        front.backbone_of_folder(TRAIN, str(tmp_path))


def test_train_takes_backbone_out_of_the_arguments_and_reads_the_model_flag_from_a_config():
    leaf, path, rest = front.resolve(TRAIN, ["mung", "train"], ["--output_dir", "o", "--backbone=llava"], {})
    assert leaf is TRAIN.children["llava"] and rest == ["--output_dir", "o"]
    with pytest.raises(ValueError, match=r"--model_name_or_path /nowhere has no config.json"):
        front.resolve(TRAIN, ["mung", "train"], [], {"model-name-or-path": "/nowhere"})


def test_a_group_runs_its_default_when_the_next_word_is_a_flag():
    eval_group = COMMANDS["eval"]
    assert isinstance(eval_group, Group)
    leaf, path, rest = front.resolve(eval_group, ["mung", "eval"], ["--model-path", "m"], {})
    assert leaf is eval_group.children[eval_group.default] and rest == ["--model-path", "m"]
    assert path == ["mung", "eval", eval_group.default]
    with pytest.raises(ValueError, match=r"^`mung serve` needs one of: web, api"):
        front.resolve(COMMANDS["serve"], ["mung", "serve"], ["--port", "1"], {})


def test_a_command_whose_module_is_missing_says_so_in_one_line(monkeypatch):
    monkeypatch.setitem(COMMANDS, "export", Leaf("x", "mung.no_such_module:main"))
    with pytest.raises(ValueError, match=r"^`mung export` runs mung.no_such_module, which this installation does "
                                         r"not have"):
        front.main(["export", "--help"])


@pytest.mark.parametrize("args, message", [
    (["trian"], "error: unknown command 'trian'; commands: train, eval,"),
    ([], "error: name a command: train, eval,"),
    (["serve", "wbe"], "error: `mung serve` has no 'wbe'; choose one of: web, api"),
])
def test_a_mistake_on_the_mung_command_line_is_one_line_and_status_2(args, message):
    done = run_mung(*args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(message)


def test_every_leaf_names_a_module_main_and_every_backbone_choice_an_installed_backbone():
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    installed = {point.name for point in entry_points(group="mung.backbones")}
    # every choice of `mung train` is an installed backbone, but trl: TRL's SFTTrainer with MuNG as a peft method,
    # for any transformers VLM, chosen by name only
    assert set(TRAIN.children) - {"trl"} <= installed and "trl" in TRAIN.children
    for name, node in COMMANDS.items():
        leaves = [node] if isinstance(node, Leaf) else list(node.children.values())
        for leaf in leaves:
            module = leaf.target.split(":")[0]
            assert find_spec(module) is not None, (name, leaf.target)
    assert isinstance(TRAIN, ByBackbone)
