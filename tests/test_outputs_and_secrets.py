"""Issue 19 §3 and §6: a command never deletes or overwrites a path it did not create, and no output path is, contains
or sits inside one of its inputs (the one rule: ``mung.files.check_output_path``; the quickstart's marker:
``clear_own_folder``) — for train, eval (tests in test_eval_reliability.py), merge, visualise, quickstart and
compare; secrets never appear in a recorded or printed command line (``mung.redaction``)."""

import argparse
import importlib.util
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from mung.files import CREATED_MARKER, check_output_path, clear_own_folder, mark_created, path_relation
from mung.redaction import HIDDEN, command_line, redact_argv
from mung.training.output_dir import LOCK_NAME, OutputDirBusy, OutputDirLock
from tiny_runs import tiny_argv, tiny_data, train_in_process

REPO = Path(__file__).resolve().parent.parent


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the rule ----------------------------------------------------------------------------------------------------------
def test_path_relation_follows_links_and_tells_is_contains_inside(tmp_path):
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    (base / "w.bin").write_bytes(b"x")
    os.link(base / "w.bin", tmp_path / "hard.bin")
    (tmp_path / "link").symlink_to(base)
    assert path_relation(base, base) == "is"
    assert path_relation(tmp_path / "link", base) == "is"
    assert path_relation(tmp_path / "hard.bin", base / "w.bin") == "is"
    assert path_relation(tmp_path, base) == "contains"
    assert path_relation(tmp_path / "link" / "sub" / "out", base) == "is inside"
    assert path_relation(tmp_path / "other", base) is None
    assert path_relation(tmp_path / "base2", base) is None  # a shared prefix is not containment


def test_check_output_path_skips_what_does_not_exist_and_names_both_flags(tmp_path):
    check_output_path(tmp_path / "out", "--out", {"--model": "org/model-on-the-hub", "--data": None}, kind="folder")
    (tmp_path / "data.json").write_text("[]")
    with pytest.raises(ValueError, match=rf"^--out {tmp_path} contains --data {tmp_path / 'data.json'}: writing "
                                         r"there could overwrite or change what is read from it\. Pass another --out\.$"):
        check_output_path(tmp_path, "--out", {"--data": str(tmp_path / "data.json")}, kind="folder")


# --- train -------------------------------------------------------------------------------------------------------------
@pytest.fixture
def no_model_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr("qwen_noise.train.train.prepare_model", refuse)


def test_a_training_output_dir_holding_its_data_is_refused_before_anything_is_written(world, tmp_path,
                                                                                      no_model_loads):
    data = tiny_data(world, "qwen", tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"--output_dir .* contains --data_path .*data\.json"):
        train_in_process("qwen", tiny_argv("qwen", world, data, world["image_folder"], tmp_path, "--max_steps", "1"))
    assert snapshot(tmp_path) == before and not (tmp_path / LOCK_NAME).exists()


def test_a_training_output_dir_inside_the_start_model_is_refused(world, tmp_path, no_model_loads):
    data = tiny_data(world, "qwen", tmp_path)
    model = Path(world["qwen_model"])
    before = sorted(p.name for p in model.iterdir())
    with pytest.raises(ValueError, match=r"--output_dir .*/run is inside --model_name_or_path"):
        train_in_process("qwen", tiny_argv("qwen", world, data, world["image_folder"], model / "run", "--max_steps", "1"))
    assert sorted(p.name for p in model.iterdir()) == before


# --- merge -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["base", "inside base", "model path", "non-empty"])
def test_merge_never_saves_over_its_inputs_or_into_a_full_folder(tmp_path, where, monkeypatch):
    merge = load_script("merge_lora_weights")
    base, run = tmp_path / "base", tmp_path / "run"
    for folder in (base, run, tmp_path / "full"):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    save = {"base": base, "inside base": base / "merged", "model path": run, "non-empty": tmp_path / "full"}[where]
    monkeypatch.setattr(merge, "load_pretrained_model", lambda *a, **k: pytest.fail("loaded before the check"))
    args = argparse.Namespace(model_path=str(run), model_base=str(base), save_model_path=str(save), save_dtype=None)
    said = {"base": "is the same folder as --model-base", "inside base": "is inside --model-base",
            "model path": "is the same folder as --model-path", "non-empty": "already holds files"}[where]
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=rf"--save-model-path .* {said}"):
        merge.merge_lora(args)
    assert snapshot(tmp_path) == before


class FakeSaver:
    """Stands for the merged model and its tokenizer: ``save_pretrained`` calls ``FakeSaver.save``."""

    save = None
    config = argparse.Namespace(dtype=None)

    def to(self, dtype):
        return self

    def save_pretrained(self, folder):
        type(self).save(folder)


def test_a_merge_that_fills_the_disk_leaves_no_half_written_model(tmp_path, monkeypatch):
    import errno

    from mung.training.output_dir import DiskFull

    merge = load_script("merge_lora_weights")
    target = tmp_path / "merged"

    def save_until_full(folder):
        Path(folder).mkdir()
        (Path(folder) / "config.json").write_text("{}")  # a model folder's first file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(merge, "load_pretrained_model", lambda *a, **k: (FakeSaver(), FakeSaver(), None, None))
    monkeypatch.setattr(merge, "save_generator_from_model", lambda model, folder: None)
    FakeSaver.save = save_until_full
    args = argparse.Namespace(model_path=str(tmp_path / "run"), model_base=str(tmp_path / "base"),
                              save_model_path=str(target), save_dtype="float32")
    with pytest.raises(DiskFull, match=r"The disk holding .* is full: saving the merged model \(.*merged\) failed"):
        merge.merge_lora(args)
    assert list(tmp_path.iterdir()) == []  # neither the target nor the staging folder is left
    FakeSaver.save = lambda folder: Path(folder).mkdir(exist_ok=True) or Path(folder, "config.json").write_text("{}")
    merge.merge_lora(args)
    assert [p.name for p in tmp_path.iterdir()] == ["merged"] and (target / "config.json").is_file()


# --- visualise ---------------------------------------------------------------------------------------------------------
def test_visualise_never_writes_over_its_image(tmp_path):
    from mung.visualize import main

    image = tmp_path / "cat.png"
    image.write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"--out .*cat\.png is the same file as --image-file"):
        main(["--model-path", str(tmp_path / "m"), "--image-file", str(image), "--question", "q", "--out", str(image)])
    sigma = tmp_path / "x_sigma.png"
    sigma.write_bytes(b"an input")
    with pytest.raises(ValueError, match=r"writes its σ map .*x_sigma\.png, which is the same file as --image-file"):
        main(["--model-path", str(tmp_path / "m"), "--image-file", str(sigma), "--question", "q",
              "--out", str(tmp_path / "x.png")])
    assert image.read_bytes() == b"not read" and sigma.read_bytes() == b"an input"


# --- quickstart --------------------------------------------------------------------------------------------------------
def test_the_quickstart_removes_only_a_folder_it_made(tmp_path):
    quickstart = load_script("quickstart")
    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "my_model.bin").write_bytes(b"precious")
    args = quickstart.parse_args(["--fast", "--backbone", "llava", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match=rf"{tmp_path / 'llava'} exists and was not made by scripts/quickstart\.py "
                                         rf"\(it has no {CREATED_MARKER} of it\).*pass another --out"):
        quickstart.quickstart(args)
    assert (tmp_path / "llava" / "my_model.bin").read_bytes() == b"precious"
    args = quickstart.parse_args(["--fast", "--backbone", "qwen", "--out", str(tmp_path),
                                  "--tiny-world", str(tmp_path / "qwen" / "world")])
    (tmp_path / "qwen" / "world").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"--out .*qwen contains --tiny-world"):
        quickstart.quickstart(args)


def test_a_marked_folder_is_cleared_and_an_unmarked_one_kept(tmp_path):
    mark_created(tmp_path / "mine", "cmd")
    (tmp_path / "mine" / "old.txt").write_text("an earlier output")
    clear_own_folder(tmp_path / "mine", "--out", "cmd")
    assert not (tmp_path / "mine").exists()
    mark_created(tmp_path / "other", "another command")
    with pytest.raises(ValueError, match="was not made by cmd"):
        clear_own_folder(tmp_path / "other", "--out", "cmd")
    (tmp_path / "empty").mkdir()
    clear_own_folder(tmp_path / "empty", "--out", "cmd")
    assert not (tmp_path / "empty").exists()


# --- compare -----------------------------------------------------------------------------------------------------------
def test_compare_refuses_an_out_folder_holding_its_training_data(tmp_path, capsys):
    from mung.compare.__main__ import main

    data = tmp_path / "train.json"
    data.write_text("[]")
    assert main(["--backbone", "llava", "--out", str(tmp_path), "--train-data", str(data)]) == 2
    assert f"--out {tmp_path} contains --train-data {data}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]


# --- §6 secrets --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, shown", [
    (["--hub_token", "hf_abcdefghijklmnopqrstuvwx"], ["--hub_token", HIDDEN]),
    (["--foo_api_key=abc123"], [f"--foo_api_key={HIDDEN}"]),
    (["X_TOKEN=abc", "DB_PASSWORD=pw", "OMP_NUM_THREADS=1"], [f"X_TOKEN={HIDDEN}", f"DB_PASSWORD={HIDDEN}",
                                                               "OMP_NUM_THREADS=1"]),
    (["--client-secret", "s", "--max_new_tokens", "8", "--pad_token_id", "0"],
     ["--client-secret", HIDDEN, "--max_new_tokens", "8", "--pad_token_id", "0"]),
    (["--note", "uses sk-abcdefghijklmnopqrstuvwx here"], ["--note", f"uses {HIDDEN} here"]),
    (["--password", "--next"], ["--password", "--next"]),  # a flag without a value hides nothing else
])
def test_redaction_hides_secret_flags_and_values_only(argv, shown):
    assert redact_argv(argv) == shown


def test_a_token_never_reaches_the_lock_file_or_another_runs_message(tmp_path, monkeypatch):
    secret = "hf_abcdefghijklmnopqrstuvwxyz0123"
    monkeypatch.setattr(sys, "argv", ["train.py", "--output_dir", str(tmp_path), "--hub_token", secret,
                                      f"--foo_api_key={secret}"])
    lock = OutputDirLock(tmp_path).acquire()
    try:
        text = (tmp_path / LOCK_NAME).read_text()
        assert secret not in text and "--hub_token ***" in json.loads(text)["command"]
        with pytest.raises(OutputDirBusy) as caught:
            OutputDirLock(tmp_path).acquire()
        assert secret not in str(caught.value) and "--foo_api_key=***" in str(caught.value)
    finally:
        lock.release()


def test_a_lock_written_by_an_older_version_is_shown_redacted(tmp_path):
    """Older locks recorded the command in full; a busy message never repeats its secret."""
    import subprocess

    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / LOCK_NAME).write_text(json.dumps({
            "pid": other.pid, "host": socket.gethostname(), "process_start": None, "started": "then",
            "command": "python train.py --hub_token hf_abcdefghijklmnopqrstuvwxyz0123"}))
        with pytest.raises(OutputDirBusy) as caught:
            OutputDirLock(tmp_path).acquire()
        assert "hf_abcdefghijklmnopqrstuvwxyz0123" not in str(caught.value) and "--hub_token ***" in str(caught.value)
    finally:
        other.kill()
        other.wait()


def test_commands_the_runners_log_are_redacted():
    assert command_line(["python", "-m", "x", "--hub_token", "hf_abcdefghijklmnopqrstuvwx", "--out", "a b"]) == \
        "python -m x --hub_token *** --out 'a b'"


# --- "Also": the mode of files written atomically --------------------------------------------------------------------
@pytest.fixture
def umask():
    def set_to(value):
        os.umask(value)

    old = os.umask(0o022)
    yield set_to
    os.umask(old)


def test_atomic_writes_get_the_umask_mode_or_keep_the_old_files(tmp_path, umask):
    """Answers files (and every atomic write) used to come out 0600 whatever the umask (``tempfile.mkstemp``)."""
    from mung.answer_files import PartialAnswers
    from mung.files import write_jsonl

    answers = tmp_path / "answers.jsonl"
    umask(0o022)
    partial = PartialAnswers(str(answers), {"model": "m"})
    partial.start()
    partial.finish([{"question_id": 1, "text": "red"}])
    assert answers.stat().st_mode & 0o777 == 0o644
    umask(0o027)
    write_jsonl(tmp_path / "new.jsonl", [{"a": 1}])
    assert (tmp_path / "new.jsonl").stat().st_mode & 0o777 == 0o640
    os.chmod(answers, 0o664)
    write_jsonl(answers, [{"question_id": 1, "text": "blue"}])
    assert answers.stat().st_mode & 0o777 == 0o664  # a rewrite keeps the mode the user gave the file


def test_generator_files_get_the_umask_mode(tmp_path, umask):
    from noise_generator import NoiseGeneratorConfig, build_noise_generator, save_noise_generator

    umask(0o002)
    generator = build_noise_generator(NoiseGeneratorConfig(hidden_size=8, num_heads=2).to_dict(), 8)
    save_noise_generator(generator, tmp_path)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        "noise_generator.safetensors": 0o664, "noise_generator_config.json": 0o664}


# --- the converters that compute their output path -------------------------------------------------------------------
def test_converters_with_computed_outputs_never_write_over_their_inputs(tmp_path, monkeypatch):
    from mung.eval import convert_answer_to_mme, convert_mmbench_for_submission
    from qwen_noise.data import convert_mmpr

    annotation = tmp_path / "exp.tsv"
    annotation.write_text("index\tquestion\n")
    with pytest.raises(ValueError, match=r"--upload-dir .*exp\.tsv is the same file as --annotation-file"):
        convert_mmbench_for_submission.main(["--annotation-file", str(annotation), "--result-dir", str(tmp_path),
                                             "--upload-dir", str(tmp_path), "--experiment", "exp", "--format", "tsv"])
    answers = tmp_path / "answers" / "answers.jsonl"
    answers.parent.mkdir()
    answers.write_text("{}\n")
    with pytest.raises(ValueError, match=r"--output-dir .*answers contains --answers-dir .*answers\.jsonl"):
        convert_answer_to_mme.main(["--experiment", "answers", "--answers-dir", str(answers.parent),
                                    "--output-dir", str(tmp_path), "--data-path", str(tmp_path / "mme")])
    meta = tmp_path / "meta.json"
    meta.write_text("{}")
    monkeypatch.setattr(sys, "argv", ["convert_mmpr", "--meta", str(meta), "--out", str(meta)])
    with pytest.raises(ValueError, match=r"--out .*meta\.json is the same file as --meta"):
        convert_mmpr.main()
    assert annotation.read_text() == "index\tquestion\n" and answers.read_text() == "{}\n" and meta.read_text() == "{}"
