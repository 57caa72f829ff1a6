"""``python -m mung.harnesses.export``: what the exported lmms-eval task and VLMEvalKit dataset hold and score, and
which folders it refuses to write into. The harnesses themselves run in tests/test_harnesses.py."""

import base64
import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mung.commands import run_command
from mung.harnesses import export
from tiny_world import score_answers


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_export(tiny_world, out, *extra):
    return export.main(["--question-file", tiny_world["eval_questions"], "--image-folder", tiny_world["image_folder"],
                        "--truth-file", tiny_world["eval_answers"], "--out", str(out), "--name", "tw", *extra])


def read_lines(path):
    return [json.loads(line) for line in open(path)]


@pytest.fixture(scope="module")
def exported(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "out"
    run_export(tiny_world, out)
    return out


def replies(tiny_world):
    """Made-up replies that exercise the rule: right, right after normalising, wrong, and empty."""
    truth = read_lines(tiny_world["eval_answers"])
    forms = [lambda a: a, lambda a: f" {a.upper()}. It is.", lambda a: "purple" if a != "purple" else "red",
             lambda a: ""]
    return {row["question_id"]: forms[i % 4](row["answer"]) for i, row in enumerate(truth)}


def test_lmms_eval_task_scores_like_the_tiny_world_scorer(exported, tiny_world, tmp_path):
    folder = exported / "lmms_eval" / "tw"
    utils = load_module(folder / "utils.py", "tw_utils")
    made_up = replies(tiny_world)
    docs = read_lines(folder / "tw.jsonl")
    accuracy = sum(utils.process_results(doc, [made_up[doc["question_id"]]])["accuracy"] for doc in docs) / len(docs)
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"question_id": q, "text": t}) + "\n" for q, t in made_up.items()))
    assert accuracy == score_answers(str(answers), tiny_world["eval_answers"])["overall"]
    assert 0 < accuracy < 1


def test_lmms_eval_task_gives_each_question_its_own_image_and_text(exported, tiny_world):
    folder = exported / "lmms_eval" / "tw"
    utils = load_module(folder / "utils.py", "tw_utils_visual")
    questions = read_lines(tiny_world["eval_questions"])
    docs = read_lines(folder / "tw.jsonl")
    assert [d["question_id"] for d in docs] == [q["question_id"] for q in questions]
    for doc, question in list(zip(docs, questions))[:20]:
        [image] = utils.doc_to_visual(doc)
        original = Image.open(Path(tiny_world["image_folder"]) / question["image"]).convert("RGB")
        assert image.tobytes() == original.tobytes()
        assert utils.doc_to_text(doc) == question["text"]


def test_lmms_eval_yaml_reads_the_local_json_beside_it(exported):
    import yaml

    class Loader(yaml.SafeLoader):  # lmms-eval's !function tags, kept as text
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    config = yaml.load((exported / "lmms_eval" / "tw" / "tw.yaml").read_text(), Loader=Loader)
    assert config["dataset_path"] == "json"
    assert config["dataset_kwargs"]["data_files"] == {"test": "tw.jsonl"}
    assert config["test_split"] == "test" and config["task"] == "tw"
    assert config["process_results"] == "utils.process_results"
    assert config["generation_kwargs"]["temperature"] == 0


def test_vlmeval_tsv_holds_the_image_bytes_and_the_question(exported, tiny_world):
    csv.field_size_limit(sys.maxsize)
    with open(exported / "vlmeval" / "tw.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    questions, truth = read_lines(tiny_world["eval_questions"]), read_lines(tiny_world["eval_answers"])
    assert [int(r["index"]) for r in rows] == list(range(len(questions)))
    for row, question, answer in zip(rows, questions, truth):
        assert base64.b64decode(row["image"]) == (Path(tiny_world["image_folder"]) / question["image"]).read_bytes()
        assert (row["question"], row["question_id"]) == (question["text"], question["question_id"])
        assert (row["answer"], row["category"]) == (answer["answer"], answer["family"])


def test_the_dataset_class_scores_predictions_like_the_tiny_world_scorer(exported, tiny_world, tmp_path,
                                                                          monkeypatch):
    pd = pytest.importorskip("pandas")
    # The class file imports VLMEvalKit; this environment lacks it, so a stand-in base class is enough to load
    # the module and call its scorer (the real VLMEvalKit runs it in tests/test_harnesses.py).
    fake = type(sys)("vlmeval")
    fake.dataset = type(sys)("vlmeval.dataset")
    fake.dataset.image_base = type(sys)("vlmeval.dataset.image_base")
    fake.dataset.image_base.ImageBaseDataset = object
    fake.smp = type(sys)("vlmeval.smp")
    fake.smp.LMUDataRoot, fake.smp.load = (lambda: ""), None
    for name, module in {"vlmeval": fake, "vlmeval.dataset": fake.dataset,
                         "vlmeval.dataset.image_base": fake.dataset.image_base, "vlmeval.smp": fake.smp}.items():
        monkeypatch.setitem(sys.modules, name, module)
    dataset = load_module(exported / "vlmeval" / "tw_dataset.py", "tw_dataset")
    made_up = replies(tiny_world)
    truth = read_lines(tiny_world["eval_answers"])
    predictions = tmp_path / "preds.tsv"
    pd.DataFrame({"question_id": [r["question_id"] for r in truth], "answer": [r["answer"] for r in truth],
                  "category": [r["family"] for r in truth],
                  "prediction": [made_up[r["question_id"]] for r in truth]}).to_csv(predictions, sep="\t", index=False)
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"question_id": q, "text": t}) + "\n" for q, t in made_up.items()))
    expected = score_answers(str(answers), tiny_world["eval_answers"])
    got = dataset.score(str(predictions))
    assert got["accuracy"] == expected["overall"]
    assert got["per_category"] == expected["per_family"]


def test_a_folder_it_did_not_write_is_refused(tiny_world, tmp_path, capsys):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        run_command(run_export, tiny_world, out)
    assert exit_info.value.code == 2
    assert "was not written by this command" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_an_earlier_export_is_replaced_and_files_added_since_are_kept(tiny_world, tmp_path):
    out = tmp_path / "out"
    run_export(tiny_world, out)
    kept = out / "vlmeval" / "images" / "tw" / "0.png"  # where VLMEvalKit writes the images it decodes
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"vlmevalkit's")
    result = run_export(tiny_world, out, "--formats", "vlmeval")
    assert kept.read_bytes() == b"vlmevalkit's"
    assert not (out / "lmms_eval").exists() or not any((out / "lmms_eval").rglob("*.*"))
    assert sorted(json.loads((out / ".mung-export.json").read_text())["files"]) == sorted(result["files"])


def test_a_file_it_did_not_write_in_its_way_is_refused(tiny_world, tmp_path):
    out = tmp_path / "out"
    run_export(tiny_world, out, "--formats", "vlmeval")
    (out / "lmms_eval" / "tw").mkdir(parents=True)
    (out / "lmms_eval" / "tw" / "utils.py").write_text("# someone's own")
    with pytest.raises(ValueError, match="was not written by this command"):
        run_export(tiny_world, out)
    assert (out / "lmms_eval" / "tw" / "utils.py").read_text() == "# someone's own"


def test_a_question_without_truth_is_named(tiny_world, tmp_path):
    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(open(tiny_world["eval_answers"]).readlines()[1:]))
    with pytest.raises(ValueError, match=r"no answer for question 'eval-00000'"):
        export.main(["--question-file", tiny_world["eval_questions"], "--image-folder", tiny_world["image_folder"],
                     "--truth-file", str(truth), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_output_inside_the_image_folder_is_refused(tiny_world, tmp_path):
    with pytest.raises(ValueError, match="overlap"):
        run_export(tiny_world, Path(tiny_world["image_folder"]) / "export")


def test_the_metric_defaults_to_exact_without_families(tiny_world, tmp_path):
    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(json.dumps({"question_id": r["question_id"], "answer": r["answer"]}) + "\n"
                             for r in read_lines(tiny_world["eval_answers"])))
    result = export.main(["--question-file", tiny_world["eval_questions"], "--image-folder",
                          tiny_world["image_folder"], "--truth-file", str(truth), "--out", str(tmp_path / "out")])
    utils = load_module(tmp_path / "out" / "lmms_eval" / result["name"] / "utils.py", "exact_utils")
    doc = {"answer": "red"}
    assert utils.process_results(doc, ["Red "])["accuracy"] == 1.0
    assert utils.process_results(doc, ["red."])["accuracy"] == 0.0  # first-word would call this right


@pytest.mark.parametrize("split", ["eval", "shift_eval"])
def test_the_examples_in_docs_are_the_export_of_the_default_tiny_world(split, tiny_world, tmp_path):
    """docs/harnesses/tiny_world_<split> is what the command in docs/serving.md writes for the default world
    (preset tiny, seed 0, as the session's); when the world changes, rerun that command."""
    out = tmp_path / split
    export.main(["--question-file", tiny_world[f"{split}_questions"], "--image-folder", tiny_world["image_folder"],
                 "--truth-file", tiny_world[f"{split}_answers"], "--name", f"tiny_world_{split}", "--out", str(out)])
    shipped = Path(__file__).resolve().parents[1] / "docs" / "harnesses" / f"tiny_world_{split}"
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    # The shipped marker lists what the export wrote (a harness run beside it may add its own files there).
    assert files == sorted(json.loads((shipped / ".mung-export.json").read_text())["files"] + [".mung-export.json"])
    for name in files:
        assert (out / name).read_bytes() == (shipped / name).read_bytes(), name


def test_a_marker_naming_paths_outside_the_folder_is_refused(tiny_world, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / ".mung-export.json").write_text(json.dumps({"files": ["../victim.txt"]}))
    with pytest.raises(ValueError, match="outside"):
        run_export(tiny_world, out)
    assert victim.read_text() == "keep me"


def test_a_text_only_question_is_refused_for_vlmeval_and_no_folder_is_left(tiny_world, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": 1, "text": "What colour is the sky?"}) + "\n")
    truth = tmp_path / "t.jsonl"
    truth.write_text(json.dumps({"question_id": 1, "answer": "blue"}) + "\n")
    with pytest.raises(ValueError, match="question 1 has no image"):
        export.main(["--question-file", str(questions), "--truth-file", str(truth), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_help_names_every_metric_without_importing_torch():
    from mung.harnesses.scorers import METRICS

    assert set(export.METRIC_NAMES) == set(METRICS)
    code = "import sys, mung.harnesses.export as e; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
