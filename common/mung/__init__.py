"""MuNG's app layer, shared by every backbone.

Everything above the models lives here once: loading a checkpoint of any kind (``loading``), answering question
files (``answering``), chatting (``chat``), generation settings and stop strings (``generation``), images
(``images``), JSON/JSONL files and atomic writes (``files``), benchmark scorers (``eval``), training plumbing
(``training``), the bad-sample policy (``bad_samples``), the VLMEvalKit model contract (``vlmeval_base``) and
filters for expected log lines (``known_log_messages``). A backbone plugs in through the small contract in
``backbones`` (its model, its data and one ``Backbone`` adapter) and is found through the ``mung.backbones``
entry-point group.
"""

from mung.known_log_messages import install_known_message_filters

# Every entry point (``python -m mung.…``, ``llava_noise.…``, ``qwen_noise.…``, ``vlm_noise.…``) imports ``mung`` before
# transformers/peft import bitsandbytes, which logs an expected warning while importing: one place filters it.
install_known_message_filters()
