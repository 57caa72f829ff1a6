"""MuNG's app layer, shared by every backbone.

Everything above the models lives here once: loading a checkpoint of any kind (``loading``), answering question
files (``answering``), chatting (``chat``), generation settings and stop strings (``generation``), images
(``images``), JSON/JSONL files and atomic writes (``files``), benchmark scorers (``eval``), training plumbing
(``training``) and the bad-sample policy (``bad_samples``). A backbone plugs in through the small contract in
``backbones`` (its model, its data and one ``Backbone`` adapter) and is found through the ``mung.backbones``
entry-point group. The VLMEvalKit model contract is ``vlmeval_base`` (``MungVLM``).
"""
