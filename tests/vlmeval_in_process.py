"""Run with VLMEvalKit's environment (.venv-vlmeval): VLMEvalKit's own inference loop
(``vlmeval.inference.infer_data_job``) drives MuNG's ``QwenNoiseVLM`` or ``LlavaNoiseVLM`` over an exported
dataset, whose class then scores the predictions. Prints {"scores", "predictions": {question_id: reply}} as JSON.

usage: LMUData=EXPORT/vlmeval python tests/vlmeval_in_process.py qwen|llava NAME MODEL_PATH MODEL_BASE|- WORK_DIR
       MAX_NEW_TOKENS
"""

import importlib.util
import json
import os
import sys

from vlmeval.inference import infer_data_job
from vlmeval.smp import LMUDataRoot, get_pred_file_path

from mung.harnesses.vlmeval_dataset import class_name


def model_of(backbone, model_path, model_base, max_new_tokens):
    """The backbone's VLMEvalKit class: greedy, mean noise, on the CPU."""
    if backbone == "qwen":
        from qwen_noise.vlmeval import QwenNoiseVLM as model_class
    else:
        from llava_noise.vlmeval import LlavaNoiseVLM as model_class
    return model_class(model_path=model_path, model_base=None if model_base == "-" else model_base,
                       noise_mode="mean", max_new_tokens=max_new_tokens, device="cpu")


def main(backbone, name, model_path, model_base, work_dir, max_new_tokens):
    path = os.path.join(LMUDataRoot(), f"{name}_dataset.py")
    spec = importlib.util.spec_from_file_location(f"{name}_dataset", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dataset = getattr(module, class_name(name))(name)
    model = model_of(backbone, model_path, model_base, int(max_new_tokens))
    os.makedirs(work_dir, exist_ok=True)
    infer_data_job(model, work_dir=work_dir, model_name=f"{backbone}-mung", dataset=dataset)
    predictions_file = get_pred_file_path(work_dir, f"{backbone}-mung", name)  # xlsx, or $PRED_FORMAT
    table = module.read_table(predictions_file)
    print(json.dumps({"scores": dataset.evaluate(predictions_file),
                      "predictions": dict(zip(table["question_id"], table["prediction"]))}))


if __name__ == "__main__":
    main(*sys.argv[1:])
