"""Benchmark scorers and converters on small hand-made files; every expected number is counted by hand here."""

import json
import zipfile
import xml.etree.ElementTree as ET

import pytest

from mung.eval import (
    convert_answer_to_mme,
    convert_gqa_for_eval,
    convert_mmbench_for_submission,
    convert_mmvet_for_submission,
    convert_seed_for_submission,
    convert_vizwiz_for_submission,
    convert_vqav2_for_submission,
    eval_gqa,
    eval_mme,
    eval_pope,
    eval_science_qa,
    eval_textvqa,
    summarize_llavabench,
)
from mung.chunking import get_chunk
from mung.eval.vqa_normalize import normalize_answer, vqa_accuracy


def write_jsonl(path, rows):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return str(path)


# ---------------------------------------------------------------- normalisation and VQA accuracy
@pytest.mark.parametrize("raw, expected", [
    ("Two", "2"),                      # number word
    ("The Red Car.", "red car"),       # article, case, final period
    ("dont", "don't"),                 # contraction regains its apostrophe
    ("yes!", "yes"),                   # punctuation touching the end is deleted
    ("3.5", "3.5"),                    # decimal point kept
    ("1,000", "1000"),                 # digit,digit comma
    ("black/white", "black white"),    # slash between words → space
])
def test_normalize_answer_applies_vqa_rules(raw, expected):
    assert normalize_answer(raw) == expected


def test_vqa_accuracy_leave_one_out_and_simple_rule():
    gts = ["red", "Red."] + ["blue"] * 8
    # "red" matches 2 of 10. Leave-one-out: leaving out one of the 2 "red" → 1/3 (twice), leaving out a blue →
    # 2/3 (eight times): (2*(1/3) + 8*(2/3)) / 10 = 0.6. Simple rule: min(2/3, 1).
    assert vqa_accuracy("red", gts) == pytest.approx(0.6)
    assert vqa_accuracy("red", gts, leave_one_out=False) == pytest.approx(2 / 3)
    # 3 matches: (3*(2/3) + 7*1)/10 = 0.9; 1 match: (1*0 + 9*(1/3))/10 = 0.3; blue (8): always min(≥7/3,1) = 1
    assert vqa_accuracy("red", ["red"] * 3 + ["x"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("red", ["red"] + ["x"] * 9) == pytest.approx(0.3)
    assert vqa_accuracy("blue", gts) == pytest.approx(1.0)


def test_chunks_cover_items_in_order():
    items = list(range(10))
    chunks = [get_chunk(items, 3, i) for i in range(3)]
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="chunk-idx"):
        get_chunk(items, 3, 3)


# ---------------------------------------------------------------- TextVQA
def test_textvqa_accuracy_matches_by_image_and_question(tmp_path):
    ann = write_json(tmp_path / "ann.json", {"data": [
        {"image_id": "img1", "question_id": 11, "question": "What brand?", "answers": ["sony"] * 3 + ["x"] * 7},
        {"image_id": "img2", "question_id": 12, "question": "Which year?", "answers": ["2010", "2010"] + ["y"] * 8},
    ]})
    res = write_jsonl(tmp_path / "res.jsonl", [
        {"question_id": "img1", "prompt": "what brand?\nReference OCR token: Sony\nAnswer the question using a "
                                          "single word or phrase.", "text": "Sony"},
        {"question_id": "img2", "prompt": "which year?\nAnswer the question using a single word or phrase.",
         "text": "2010."},
    ])
    acc, n = eval_textvqa.textvqa_accuracy(ann, res)
    assert n == 2
    assert acc == pytest.approx((0.9 + 0.6) / 2)  # 3 matches → 0.9, 2 matches → 0.6 (see above)
    acc_simple, _ = eval_textvqa.textvqa_accuracy(ann, res, leave_one_out=False)
    assert acc_simple == pytest.approx((1.0 + 2 / 3) / 2)


def test_textvqa_unmatched_answer_is_an_error(tmp_path):
    ann = write_json(tmp_path / "ann.json", {"data": [
        {"image_id": "img1", "question_id": 11, "question": "q", "answers": ["a"] * 10}]})
    res = write_jsonl(tmp_path / "res.jsonl", [{"question_id": "nope", "prompt": "other", "text": "a"}])
    with pytest.raises(ValueError, match="answer 1"):
        eval_textvqa.textvqa_accuracy(ann, res)


# ---------------------------------------------------------------- POPE
def make_pope(tmp_path):
    # category "random": labels yes yes yes no no ; answers Yes, No., yes, "Yes, there is", "There is not"
    #   → preds yes no yes yes no → TP 2, FN 1, FP 1, TN 1
    # category "adversarial": labels yes no ; answers "No", "No" → TP 0 FN 1 FP 0 TN 1
    ann = tmp_path / "ann"
    ann.mkdir()
    random_labels = ["yes", "yes", "yes", "no", "no"]
    write_jsonl(ann / "coco_pope_random.json",
                [{"question_id": i + 1, "image": f"r{i}.jpg", "label": l} for i, l in enumerate(random_labels)])
    write_jsonl(ann / "coco_pope_adversarial.json",
                [{"question_id": i + 1, "image": f"a{i}.jpg", "label": l} for i, l in enumerate(["yes", "no"])])
    questions = [{"question_id": i, "image": f"r{i}.jpg", "text": "?", "category": "random"} for i in range(5)]
    questions += [{"question_id": 5 + i, "image": f"a{i}.jpg", "text": "?", "category": "adversarial"} for i in range(2)]
    texts = ["Yes", "No.", "yes", "Yes, there is", "There is not", "No", "No"]
    answers = [{"question_id": q["question_id"], "text": t} for q, t in zip(questions, texts)]
    return str(ann), write_jsonl(tmp_path / "q.jsonl", questions), write_jsonl(tmp_path / "a.jsonl", answers)


def test_pope_metrics_from_hand_counted_table(tmp_path):
    res = eval_pope.evaluate_pope(*make_pope(tmp_path))
    r = res["random"]
    assert (r["TP"], r["FP"], r["TN"], r["FN"]) == (2, 1, 1, 1)
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)      # 2·(2/3)(2/3)/(4/3)
    assert r["yes_ratio"] == pytest.approx(3 / 5)
    a = res["adversarial"]
    assert (a["TP"], a["FP"], a["TN"], a["FN"]) == (0, 0, 1, 1)
    assert (a["accuracy"], a["precision"], a["recall"], a["f1"], a["yes_ratio"]) == (0.5, 0.0, 0.0, 0.0, 0.0)
    assert res["average"]["f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert res["average"]["accuracy"] == pytest.approx((0.6 + 0.5) / 2)


def test_pope_misaligned_images_are_an_error(tmp_path):
    ann, q, a = make_pope(tmp_path)
    rows = [json.loads(l) for l in open(q)]
    rows[0]["image"], rows[1]["image"] = rows[1]["image"], rows[0]["image"]
    write_jsonl(q, rows)
    with pytest.raises(ValueError, match="not in the same order"):
        eval_pope.evaluate_pope(ann, q, a)


# ---------------------------------------------------------------- GQA
def test_gqa_conversion_and_accuracy(tmp_path):
    src = write_jsonl(tmp_path / "merge.jsonl", [
        {"question_id": "201", "text": "Yes."}, {"question_id": "202", "text": "Table"},
        {"question_id": "203", "text": "red"}])
    dst = tmp_path / "pred.json"
    convert_gqa_for_eval.main(["--src", src, "--dst", str(dst)])
    preds = json.load(open(dst))
    assert preds == [{"questionId": "201", "prediction": "yes"}, {"questionId": "202", "prediction": "table"},
                     {"questionId": "203", "prediction": "red"}]
    questions = {"201": {"answer": "yes"}, "202": {"answer": "chair"}, "203": {"answer": "red"}}
    assert eval_gqa.gqa_accuracy(preds, questions) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- VQAv2 / VizWiz / MM-Vet
def test_vqav2_submission_covers_test_split_with_normalised_answers(tmp_path):
    root = tmp_path / "vqav2"
    (root / "answers" / "dev" / "m").mkdir(parents=True)
    write_jsonl(root / "llava_vqav2_mscoco_test2015.jsonl", [{"question_id": i} for i in (1, 2, 3)])
    write_jsonl(root / "answers" / "dev" / "m" / "merge.jsonl",
                [{"question_id": 1, "text": "Two."}, {"question_id": 3, "text": "The dog"}])
    convert_vqav2_for_submission.main(["--dir", str(root), "--ckpt", "m", "--split", "dev"])
    out = json.load(open(root / "answers_upload" / "dev" / "m.json"))
    assert out == [{"question_id": 1, "answer": "2"}, {"question_id": 2, "answer": ""},
                   {"question_id": 3, "answer": "dog"}]


def test_vizwiz_submission_and_missing_answer_error(tmp_path):
    q = write_jsonl(tmp_path / "q.jsonl", [{"question_id": 0, "image": "v0.jpg"}, {"question_id": 1, "image": "v1.jpg"}])
    a = write_jsonl(tmp_path / "a.jsonl", [{"question_id": 1, "text": "Unanswerable"}, {"question_id": 0, "text": "A cup."}])
    dst = tmp_path / "up.json"
    convert_vizwiz_for_submission.main(["--annotation-file", q, "--result-file", a, "--result-upload-file", str(dst)])
    assert json.load(open(dst)) == [{"image": "v0.jpg", "answer": "cup"}, {"image": "v1.jpg", "answer": "unanswerable"}]
    write_jsonl(tmp_path / "a.jsonl", [{"question_id": 1, "text": "x"}])
    with pytest.raises(ValueError, match="1 questions unanswered"):
        convert_vizwiz_for_submission.main(["--annotation-file", q, "--result-file", a, "--result-upload-file", str(dst)])


def test_mmvet_submission_keys(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", [{"question_id": 0, "text": "a"}, {"question_id": 7, "text": "b"}])
    dst = tmp_path / "mmvet.json"
    convert_mmvet_for_submission.main(["--src", src, "--dst", str(dst)])
    assert json.load(open(dst)) == {"v1_0": "a", "v1_7": "b"}


# ---------------------------------------------------------------- SEED
def test_seed_per_type_accuracy(tmp_path):
    annotation = {"question_type": {"Scene": 1, "Count": 2, "Action": 3}, "questions": [
        {"question_id": "1", "question_type_id": 1, "answer": "A", "data_type": "image"},
        {"question_id": "2", "question_type_id": 1, "answer": "B", "data_type": "image"},
        {"question_id": "3", "question_type_id": 2, "answer": "C", "data_type": "image"},
        {"question_id": "4", "question_type_id": 3, "answer": "D", "data_type": "video"},
    ]}
    results = [{"question_id": 1, "text": "A"}, {"question_id": 2, "text": "A"}, {"question_id": 3, "text": "C."}]
    acc = convert_seed_for_submission.seed_accuracy(annotation, results)
    assert acc["per_type"] == {"Scene": (1, 2), "Count": (1, 1), "Action": (0, 1)}
    assert (acc["correct"], acc["total"], acc["unanswered"]) == (2, 4, 1)
    img = convert_seed_for_submission.seed_accuracy(annotation, results, "image")
    assert (img["correct"], img["total"]) == (2, 3)


# ---------------------------------------------------------------- ScienceQA
def test_science_qa_accuracy_and_img_accuracy(tmp_path):
    problems = {
        "1": {"choices": ["x", "y"], "answer": 1, "image": "image.png"},
        "2": {"choices": ["x", "y", "z"], "answer": 0, "image": None},
        "3": {"choices": ["x", "y"], "answer": 0, "image": "image.png"},
        "4": {"choices": ["x", "y"], "answer": 1, "image": None},
        "5": {"choices": ["x", "y"], "answer": 0, "image": "image.png"},
    }
    base = tmp_path / "sqa"
    base.mkdir()
    write_json(base / "problems.json", problems)
    write_json(base / "pid_splits.json", {"test": ["1", "2", "3", "4", "5"]})
    # 1: "B" right; 2: "A. x" right; 3: "The answer is A." right; 4: "C" out of range → wrong; 5: unanswered
    res = write_jsonl(tmp_path / "a.jsonl", [
        {"question_id": "1", "text": "B"}, {"question_id": "2", "text": "A. x"},
        {"question_id": "3", "text": "I think. The answer is A."}, {"question_id": "4", "text": "C"}])
    out = tmp_path / "result.json"
    eval_science_qa.main(["--base-dir", str(base), "--result-file", res, "--output-result", str(out)])
    r = json.load(open(out))
    assert (r["correct"], r["count"]) == (3, 5)
    assert r["acc"] == pytest.approx(60.0)
    assert r["img_acc"] == pytest.approx(100 * 2 / 3)   # images: 1 ✓, 3 ✓, 5 ✗
    assert r["results"] == {"1": 1, "2": 0, "3": 0, "4": -1, "5": -1}


# ---------------------------------------------------------------- MME
def test_mme_scores_acc_plus_and_totals(tmp_path):
    data = tmp_path / "MME"
    (data / "existence").mkdir(parents=True)
    (data / "artwork" / "questions_answers_YN").mkdir(parents=True)
    (data / "existence" / "e1.txt").write_text("Is there a cat?\tYes\nIs there a dog?\tNo\n")
    (data / "existence" / "e2.txt").write_text("Is there a car?\tYes\nIs there a bus?\tNo\n")
    (data / "artwork" / "questions_answers_YN" / "w1.txt").write_text("Is it by X?\tYes\nIs it by Y?\tNo\n")
    (data / "code_reasoning").mkdir()
    (data / "code_reasoning" / "c1.txt").write_text("Prints 1?\tYes\nPrints 2?\tNo\n")
    suffix = "\nAnswer the question using a single word or phrase."
    answers = [
        ("existence/e1.png", "Is there a cat?", "Yes"), ("existence/e1.png", "Is there a dog?", "No, there is not"),
        ("existence/e2.png", "Is there a car?", "yes"), ("existence/e2.png", "Is there a bus?", "Yes"),
        ("artwork/w1.jpg", "Is it by X?", "Maybe"), ("artwork/w1.jpg", "Is it by Y?", "no"),
        ("code_reasoning/c1.png", "Prints 1?", "Yes"), ("code_reasoning/c1.png", "Prints 2?", "No"),
    ]
    (tmp_path / "answers").mkdir()
    write_jsonl(tmp_path / "answers" / "exp.jsonl",
                [{"question_id": q, "prompt": p + suffix, "text": t} for q, p, t in answers])
    convert_answer_to_mme.main(["--experiment", "exp", "--data-path", str(data),
                                "--answers-dir", str(tmp_path / "answers"), "--output-dir", str(tmp_path / "out")])
    scores = eval_mme.mme_scores(tmp_path / "out" / "exp")
    # existence: 3/4 questions right = 75, images all right: e1 only → 50 → 125
    # artwork: "Maybe" → other (wrong), "no" right → 50, acc+ 0 → 50;  code_reasoning: 100 + 100 = 200
    p = scores["Perception"]
    assert p["subtasks"]["existence"] == {"acc": 75.0, "acc_plus": 50.0, "score": 125.0}
    assert p["subtasks"]["artwork"]["score"] == pytest.approx(50.0)
    assert p["total"] == pytest.approx(175.0)
    assert scores["Cognition"]["total"] == pytest.approx(200.0)
    assert "count" in scores["missing"]


# ---------------------------------------------------------------- MMBench
def test_mmbench_submission_xlsx_has_predictions(tmp_path):
    tsv = tmp_path / "mmbench.tsv"
    tsv.write_text(
        "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage\tsource\tl2-category\tcomment\tsplit\n"
        "10\tWhat is \"it\"?\tnan\tcat\tdog\tnan\tnan\tA\tc1\tiVBOR\ts\tl2\tnan\tdev\n"
        "11\tColour?\tA hint\tred\tblue\tgreen\tnan\tC\tc2\tiVBOR\ts\tl2\tnan\tdev\n")
    (tmp_path / "res").mkdir()
    write_jsonl(tmp_path / "res" / "exp.jsonl", [
        {"question_id": 10, "round_id": 0, "text": "A"}, {"question_id": 10, "round_id": 1, "text": "B"},
        {"question_id": 11, "round_id": 0, "text": "C"}])
    convert_mmbench_for_submission.main(["--annotation-file", str(tsv), "--result-dir", str(tmp_path / "res"),
                                         "--upload-dir", str(tmp_path / "up"), "--experiment", "exp"])
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(tmp_path / "up" / "exp.xlsx") as z:
        assert "xl/workbook.xml" in z.namelist()
        sheet = ET.fromstring(z.read("xl/worksheets/sheet1.xml"))
    table = []
    for row in sheet.iter(f"{{{ns['m']}}}row"):
        cells = []
        for c in row:
            v = c.find("m:v", ns)
            cells.append(v.text if v is not None else c.find("m:is/m:t", ns).text)
        table.append(cells)
    assert table[0] == ["index", "question", "A", "B", "C", "D", "prediction", "answer", "split"]
    assert table[1] == ["10", 'What is "it"?', "cat", "dog", None, None, "A", "A", "dev"]
    assert table[2][6] == "C"


# ---------------------------------------------------------------- LLaVA-Bench
def test_llavabench_review_summary():
    reviews = [
        {"question_id": 0, "category": "conv", "tuple": [8, 6]},
        {"question_id": 1, "category": "conv", "tuple": [10, 8]},
        {"question_id": 2, "category": "detail", "tuple": [5, 5]},
    ]
    out = summarize_llavabench.summarize_reviews(reviews)
    # conv: ref mean 9, model mean 7 → 77.8, 90, 70; all: ref 23/3, model 19/3 → 100·19/23 = 82.6
    assert out["conv"] == (77.8, 90.0, 70.0)
    assert out["detail"] == (100.0, 50.0, 50.0)
    assert out["all"] == (82.6, 76.7, 63.3)
    assert summarize_llavabench.summarize_reviews(reviews, ignore={"2"})["all"] == (77.8, 90.0, 70.0)
