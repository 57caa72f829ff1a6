"""Trainer plumbing shared by every backbone's training entry point.

- ``flags``: the ``--ng_*`` flags (derived from ``NoiseGeneratorConfig``'s fields), ``--on_nonfinite``, help texts,
  the compute dtype, and the check for flags that a run would ignore;
- ``distributed``: DeepSpeed on CPU, ZeRO-3 gathering and the generator saved from a (partitioned) model, DeepSpeed
  configs that would drop per-group learning rates, tearing the process group down;
- ``runs``: which checkpoint to resume from, finished runs, ``--overwrite_output_dir``;
- ``parameters``: trainable-parameter counts and optimizer groups with per-part learning rates;
- ``adapters``: bitsandbytes preparation and LoRA, with the target modules given by the backbone;
- ``nonfinite``: the NaN/inf guard of training steps;
- ``trainer``: ``MungTrainerMixin``, the one mixin both backbones' Trainers put before ``Trainer`` (the guard,
  optimizer groups, the generator saved and restored on resume);
- ``rank_log``: a callback recording each rank's loss and parameters (the multi-process tests inject it).
"""
