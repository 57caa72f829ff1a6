"""Evaluation for every backbone, each script run as ``python -m mung.eval.<name>``.

- answering: ``model_vqa_loader``, ``model_vqa``, ``model_vqa_science``, ``model_vqa_mmbench``, ``run_query``
  (question readers in ``questions`` and ``mmbench_tsv``);
- scorers: ``eval_pope``, ``eval_mme`` (after ``convert_answer_to_mme``), ``eval_gqa`` (after
  ``convert_gqa_for_eval``), ``eval_textvqa``, ``eval_science_qa``, ``eval_tiny_world``, ``summarize_llavabench``,
  and SEED-Bench's ``convert_seed_for_submission``;
- submission converters: ``convert_vqav2_for_submission``, ``convert_vizwiz_for_submission``,
  ``convert_mmbench_for_submission`` (with ``xlsx``), ``convert_mmvet_for_submission``;
- ``vqa_normalize``: the VQA answer normalisation and accuracy.

They read the answers files any backbone's answering entry points write (LLaVA's format), so they do not depend
on a backbone; ``llava_noise.eval`` keeps LLaVA's command names for them.
"""
