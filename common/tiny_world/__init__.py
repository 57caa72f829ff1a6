"""tiny_world: the embedded default world of MuNG, built offline and deterministically.

``python -m tiny_world --out DIR [--preset tiny|small] [--seed N] [--force]`` or ``tiny_world.build(DIR)`` writes
tiny random LLaVA-1.5 and Qwen2.5-VL checkpoints (real formats, loaded by the real ``from_pretrained`` classes)
and a synthetic VQA set of coloured shapes whose answers depend on the images. The same preset and seed always
give the same files and weights. ``build`` reuses a world already in DIR when its preset, seed and builder
version match (unless ``force``).

Manifest keys (``DIR/manifest.json``; ``build``/``load_manifest`` return the paths absolute; the file stores them
relative, so the folder can be moved). These keys are stable:

Paths
    llava_llm               folder: Vicuna-like ``LlamaForCausalLM`` + its sentencepiece tokenizer
                            (tokenizer.model + tokenizer.json; ``AutoTokenizer`` works; model_max_length 2048,
                            padding side right, no pad token). In transformers 5.23 this tokenizer adds NO BOS:
                            LLaVA's preprocessing must prepend ``<s>`` (id 1) itself.
    llava_vision_tower      folder: ``CLIPVisionModel`` + ``CLIPImageProcessor`` (56 px, patch 14 -> 16 patches
                            + CLS; ``small``: 112 px -> 64 patches)
    qwen_model              folder: ``Qwen2_5_VLForConditionalGeneration`` + ``Qwen2_5_VLProcessor``
                            (``AutoProcessor`` works; a 112 x 112 image -> grid [1, 8, 8] -> 16 image tokens)
    image_folder            root that every image path in the data files is relative to
    scenes                  json {image path: {"background", "noise_seed", "shapes": [{"shape", "colour", "x",
                            "y", "half"}]}}: what each image shows (x, y = centre pixel, inside the shape)
    llava_train_json        LLaVA training JSON list {"id", "image"?, "conversations", "family"} (white
    llava_shift_train_json  backgrounds / dark noisy backgrounds); one image at most per sample
    qwen_train_json         the same samples plus two-image ones ("image" a list, one <image> per image)
    qwen_shift_train_json
    mmpr_meta               MMPR-v1.1 meta.json {source: {"root", "annotation", "repeat_time", "length"}}; "root"
                            and "annotation" are relative to the folder holding meta.json
    eval_questions          LLaVA eval jsonl {"question_id", "image", "text", "category"} (white backgrounds)
    eval_answers            ground truth jsonl {"question_id", "answer", "family"}
    shift_eval_questions    the same on dark noisy backgrounds (the domain-shift setting)
    shift_eval_answers
  Builder version 4 adds (``tiny_world.distractor`` describes the distractor setting):
    shift_val_questions     a validation split of the shift setting (dark noisy, 60 per family): no image, and
    shift_val_answers       no layout of shapes even on other noise, shared with any train or eval split
    llava_distractor_train_json  training JSON of the distractor setting (white backgrounds, 2-3 shapes per
    qwen_distractor_train_json   image, single-turn questions naming one shape; the same records in both files)
    distractor_val_questions     its validation split (disjoint as shift_val) and its eval split (families
    distractor_val_answers       colour, shape, yesno, position: 75 questions each)
    distractor_eval_questions
    distractor_eval_answers
Values
    preset, seed, version   what was built, and the builder version (``build(..., version=3)`` or
                            ``--version 3`` still builds version 3's world, file for file). Version 5 changes
                            no key: its CLIP tower's position embeddings are scaled to a patch feature's size
                            (``models.POSITION_EMBEDDING_SCALE``), so a frozen tower shows where a shape is
    answer_words            every single-word answer (each one token in both tokenizers)
    families                the evaluated question families: colour, shape, count, yesno, position
    chance                  {family: chance accuracy}: colour 1/6, shape 1/3, count 1/4, yesno 1/2, position 1/2
    counts                  {split: samples}: train, shift_train, eval, shift_eval (LLaVA files), qwen_train,
                            qwen_shift_train (Qwen files, incl. two-image samples), mmpr (annotation lines),
                            images (PNG files)

Tiny checkpoints of transformers' own VLM families (LLaVA in the HF format, LLaVA-NeXT, LLaVA-OneVision, Qwen2-VL,
Qwen3-VL, Gemma 3, PaliGemma, Idefics3, SmolVLM, InternVL, Mistral 3) are built on demand beside a world:
``build_families(DIR, names)`` or ``--families all`` write ``DIR/families/<name>/`` (model + processor + chat
template, loadable offline by ``AutoModelForImageTextToText`` / ``AutoProcessor``); see ``tiny_world.families``.

Training files also hold families "multi_turn" (two QA turns about one image), "text" (no image) and
"multi_image" (Qwen/MMPR only). ``score_answers(answers_jsonl, ground_truth_jsonl)`` scores answers per family.
"""

from .builder import build
from .families import build_families, family_names
from .manifest import BUILDER_VERSION, PATH_KEYS, load_manifest
from .scoring import normalize_answer, score_answers
from .vocabulary import ANSWER_WORDS, CHANCE, FAMILIES

__all__ = [
    "ANSWER_WORDS",
    "BUILDER_VERSION",
    "CHANCE",
    "FAMILIES",
    "PATH_KEYS",
    "build",
    "build_families",
    "family_names",
    "load_manifest",
    "normalize_answer",
    "score_answers",
]
