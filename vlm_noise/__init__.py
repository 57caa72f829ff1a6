"""MuNG for any transformers VLM: the generic backbone.

``noise_generator.attach`` puts the generator into an ``AutoModelForImageTextToText`` model with hooks;
``vlm_noise.adapter`` drives such models through the shared app layer (``mung``: loading, answering, chat, noise
maps) with ``AutoProcessor`` and the processor's chat template; ``vlm_noise.data`` turns conversation records into
model inputs and labels (assistant turns only) for training; ``vlm_noise.train`` is the training entry point
(``python -m vlm_noise.train.train``) on the shared plumbing (``mung.training``). ``vlm_noise.support`` says which
families are served.
"""

import mung  # noqa: F401,E402  (first: its import filters the expected log lines of the dependencies)
