"""Standard VQA answer normalisation (the VQA/EvalAI/m4c rules) and VQA accuracy.

Normalisation, in order (the order of the official VQA evaluation and of m4c's EvalAI answer processor):
1. lower-case, drop ``,`` and ``?``, split ``'s`` off its word, turn newlines/tabs into spaces, strip;
2. punctuation: each mark in ``PUNCTUATION`` is deleted when it touches a space or the text has a digit,digit
   comma, else replaced by a space; a period is deleted unless a digit follows it ("3.5" keeps its point —
   this is what the official script's period regex effectively does);
3. per word: number words "zero".."ten" (and "none") become digits, the articles a/an/the are dropped, and
   apostrophe-less contractions get their apostrophe back ("dont" → "don't").

Accuracy against the (usually ten) human answers, both as used by official tools:
- ``leave_one_out=True`` (official VQA and TextVQA/m4c): average over the ten subsets that leave one human
  answer out of min(#matches in the other nine / 3, 1);
- ``leave_one_out=False`` (the short rule): min(#matches / 3, 1).
"""

import re

PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = {"a", "an", "the"}

# Contracted forms; the lookup table maps each form with some or all apostrophes removed back to it.
_CONTRACTED = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't "
    "he'd he'd've he's how'd how'll how's i'd i'd've i'm i've isn't it'd it'd've it'll let's ma'am mightn't "
    "mightn't've might've mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've she's "
    "should've shouldn't shouldn't've somebody'd somebody'd've somebody'll somebody's someone'd someone'd've "
    "someone'll someone's something'd something'd've something'll that's there'd there'd've there're there's "
    "they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll what're what's what've "
    "when's where'd where's where've who'd who'd've who'll who're who's who've why'll why're why's won't "
    "would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've"
).split()


def _contraction_table():
    table = {}
    for form in _CONTRACTED:
        parts = form.split("'")
        # every way of dropping a non-empty subset of the apostrophes
        gaps = len(parts) - 1
        for mask in range(1, 2 ** gaps):
            text = parts[0]
            for g in range(gaps):
                text += ("" if mask >> g & 1 else "'") + parts[g + 1]
            table.setdefault(text, form)
    return table


CONTRACTIONS = _contraction_table()
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")


def _punctuation(text):
    strip_all = _DIGIT_COMMA.search(text) is not None
    for p in PUNCTUATION:
        if strip_all or (p + " ") in text or (" " + p) in text:
            text = text.replace(p, "")
        else:
            text = text.replace(p, " ")
    return _PERIOD.sub("", text)


def _words(text):
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_answer(answer):
    """Normalise one answer string with the standard VQA rules (see module docstring)."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's")
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _words(_punctuation(text))


def vqa_accuracy(prediction, gt_answers, leave_one_out=True, normalize=True):
    """VQA accuracy of one prediction against the human answers (see module docstring for the two rules)."""
    if not gt_answers:
        raise ValueError("vqa_accuracy needs at least one ground-truth answer")
    if normalize:
        prediction = normalize_answer(prediction)
        gt_answers = [normalize_answer(a) for a in gt_answers]
    matches = sum(a == prediction for a in gt_answers)
    if not leave_one_out:
        return min(matches / 3.0, 1.0)
    total = 0.0
    for left_out in gt_answers:
        total += min((matches - (left_out == prediction)) / 3.0, 1.0)
    return total / len(gt_answers)
