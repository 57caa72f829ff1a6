"""MuNG's app layer shared by every backbone.

``vlmeval_base``: the VLMEvalKit model contract (``MungVLM``); ``bad_samples``: the training-data bad-sample policy;
``known_log_messages``: filters for log lines that are expected and say nothing actionable.
"""
