"""The ``mung`` command's tree, as data: each word a user types, what it does in one line, and which module's
``main(argv)`` runs it.

Nothing here imports a target: the tree names modules as strings, so ``mung --help`` and every group's help list
the commands without loading torch or transformers, and a module that is not in this checkout (yet) is reported in
one line when it is asked for, not when the command starts. Three shapes of node:

- ``Leaf``: one module's ``main(argv)`` (``target`` = ``"package.module:function"``).
- ``Group``: a choice of leaves by the next word (``mung serve web``); ``default`` runs when the next word is a flag.
- ``ByBackbone``: a choice of leaves by backbone (``mung train``): ``--backbone NAME``, or the backbone that serves
  the ``config.json`` of the folder named by ``model_flag``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union


@dataclass(frozen=True)
class Leaf:
    summary: str
    target: str  # "package.module:function"; the function takes argv (a list of strings, or None)


@dataclass(frozen=True)
class Group:
    summary: str
    children: dict[str, Leaf]
    default: Optional[str] = None  # the child run when the next word is a flag (None: a child must be named)


@dataclass(frozen=True)
class ByBackbone:
    summary: str
    children: dict[str, Leaf]  # backbone name (mung.backbones entry point) -> its leaf
    model_flag: str = "--model_name_or_path"  # the folder whose config.json picks the backbone
    aliases: dict[str, str] = field(default_factory=dict)  # other spellings of model_flag


Node = Union[Leaf, Group, ByBackbone]

TRAIN = ByBackbone(
    "fine-tune with MuNG, or a LoRA/DoRA/full baseline (backbone: --backbone or the model's config.json)",
    {
        "llava": Leaf("LLaVA-1.5 (LLaVA's training flags, --noise_generator True, --ng_*)",
                      "llava_noise.train.train:main"),
        "qwen": Leaf("Qwen2.5-VL (--tune noise|noise_lora|lora|dora|full, --ng_*)", "qwen_noise.train.train:main"),
        "vlm": Leaf("any transformers VLM (--tune noise|noise_lora|lora|full, --ng_*)", "vlm_noise.train.train:main"),
        "trl": Leaf("any transformers VLM through TRL's SFTTrainer, MuNG as a peft method (--mung JSON settings)",
                    "vlm_noise.train.trl_sft:main"),
    },
    aliases={"--model-name-or-path": "--model_name_or_path"},
)

EVAL = Group(
    "answer a question file with a checkpoint of any kind and backbone (writes an answers file)",
    {
        "questions": Leaf("a question jsonl, batched (model_vqa_loader; the default)",
                          "mung.eval.model_vqa_loader:main"),
        "one-by-one": Leaf("a question jsonl, one question at a time (model_vqa: MM-Vet, LLaVA-Bench)",
                           "mung.eval.model_vqa:main"),
        "science": Leaf("ScienceQA in LLaVA's conversation format (model_vqa_science)",
                        "mung.eval.model_vqa_science:main"),
        "mmbench": Leaf("MMBench / MMBench-CN from its TSV (model_vqa_mmbench)", "mung.eval.model_vqa_mmbench:main"),
        "query": Leaf("one query about zero or more images, printed (run_query)", "mung.eval.run_query:main"),
    },
    default="questions",
)

SCORE = Group(
    "score an answers file: the tiny world or a benchmark",
    {
        "tiny-world": Leaf("accuracy on the tiny world's eval split, per question family",
                           "mung.eval.eval_tiny_world:main"),
        "gqa": Leaf("GQA exact-match accuracy of a predictions file", "mung.eval.eval_gqa:main"),
        "mme": Leaf("MME scores from eval-tool result files", "mung.eval.eval_mme:main"),
        "pope": Leaf("POPE scores per category and averaged", "mung.eval.eval_pope:main"),
        "science-qa": Leaf("ScienceQA accuracy", "mung.eval.eval_science_qa:main"),
        "textvqa": Leaf("TextVQA accuracy", "mung.eval.eval_textvqa:main"),
        "llavabench": Leaf("summarise LLaVA-Bench GPT review files", "mung.eval.summarize_llavabench:main"),
    },
)

CONVERT = Group(
    "convert answers into a benchmark's submission format, or training data into MuNG's",
    {
        "mme": Leaf("answers -> MME eval-tool result files", "mung.eval.convert_answer_to_mme:main"),
        "gqa": Leaf("answers -> GQA predictions file", "mung.eval.convert_gqa_for_eval:main"),
        "mmbench": Leaf("answers -> MMBench submission spreadsheet", "mung.eval.convert_mmbench_for_submission:main"),
        "mmvet": Leaf("answers -> MM-Vet submission json", "mung.eval.convert_mmvet_for_submission:main"),
        "seed": Leaf("answers -> SEED-Bench accuracy and upload file", "mung.eval.convert_seed_for_submission:main"),
        "vizwiz": Leaf("answers -> VizWiz submission json", "mung.eval.convert_vizwiz_for_submission:main"),
        "vqav2": Leaf("answers -> VQAv2 EvalAI submission json", "mung.eval.convert_vqav2_for_submission:main"),
        "mmpr": Leaf("MMPR-v1.1 preference data -> supervised training items", "qwen_noise.data.convert_mmpr:main"),
        "adapter": Leaf("a generator-only checkpoint -> a MuNG peft adapter, or back", "mung.convert_adapter:main"),
    },
)

SERVE = Group(
    "serve a checkpoint: the web demo or the OpenAI-compatible API (127.0.0.1 unless --host)",
    {
        "web": Leaf("the web demo: chat about an image, noise off vs MuNG side by side, noise maps",
                    "mung.serve.web:main"),
        "api": Leaf("the OpenAI-compatible chat completions API", "mung.serve.api:main"),
    },
)

COMMANDS: dict[str, Node] = {
    "train": TRAIN,
    "eval": EVAL,
    "score": SCORE,
    "chat": Leaf("chat with a checkpoint about an image in the terminal", "mung.serve.cli:main"),
    "serve": SERVE,
    "compare": Leaf("train and evaluate every method with one budget: the paper's tables",
                    "mung.compare.__main__:main"),
    "export": Leaf("export a question file (and answers) as an lmms-eval task and a VLMEvalKit dataset",
                   "mung.harnesses.export:main"),
    "visualize": Leaf("draw the generator's noise map (per-patch |mu| and sigma) over an image", "mung.visualize:main"),
    "convert": CONVERT,
    "world": Leaf("build the tiny offline world (models and synthetic VQA data) the tests and demos use",
                  "tiny_world.__main__:main"),
}
