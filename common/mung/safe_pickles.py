"""Pickle-format files (``torch.save``) are checked with the weights-only unpickler before anything reads them.

Loading reads weights only with ``weights_only=True`` already, but its refusal is torch's own text, which advises
``weights_only=False``. Resuming reads more: the Trainer's ``optimizer.pt`` / ``scheduler.pt`` / ``scaler.pt`` /
``rng_state*.pth`` and, under DeepSpeed, ``global_stepN/*.pt``, which DeepSpeed unpickles with the full unpickler (any
object, any code). So every such file is first read by the weights-only unpickler, allowing exactly the types the
Trainer and DeepSpeed write (``RESUME_TYPES``, found by listing the globals of real ZeRO-2/3 checkpoints). Each name
is allowed through a stand-in class, so checking a file imports and runs nothing that the file names. A file that
holds anything else is refused naming the file, what it holds and the flag that trusts it (``--trust_checkpoint``).
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Iterable, Optional

import torch

logger = logging.getLogger(__name__)

TRUST_FLAG = "--trust_checkpoint True"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
# Written beside a checkpoint (the Trainer's copy of the run's flags) and never read by a resume or a load.
NEVER_READ = ("training_args.bin",)
# Besides tensors and plain containers (torch's own allow-list): what the Trainer and DeepSpeed write.
RESUME_TYPES = (
    # rng_state*.pth: numpy's random state (numpy 2 and numpy 1 module paths)
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.dtypes.UInt32DType",
    # global_stepN/*optim_states.pt: ZeRO's stage, its loss scaler (LossScaler for bf16/fp32; DynamicLossScaler for
    # fp16, deepspeed.runtime.fp16.loss_scaler.CreateLossScaler) and fragment maps (also under the name DeepSpeed
    # keeps in bf16_optimizer for its older checkpoints)
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.utils.tensor_fragment.fragment_address",
    "deepspeed.runtime.bf16_optimizer.fragment_address",
)


class UntrustedPickle(ValueError):
    """A pickle-format file that holds more than the allowed types, or cannot be read; the message says which."""


class _StandIn:
    """What an allowed name becomes while a file is checked: accepts any arguments and state, runs nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _stand_ins(names: Iterable[str]) -> list[tuple[type, str]]:
    return [(type(name.rsplit(".", 1)[-1], (_StandIn,), {}), name) for name in names]


def _pickle_bytes(path: Path) -> bytes:
    """The main pickle of a ``torch.save`` file (``data.pkl`` in its zip), else the file itself."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            return archive.read(names[0]) if names else b""
    return path.read_bytes()


def named_globals(path: str | os.PathLike) -> list[str]:
    """The ``module.name`` globals a pickle file names, read from its opcodes (nothing is unpickled)."""
    found, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(_pickle_bytes(Path(path)))):
            if opcode.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except (ValueError, EOFError, zipfile.BadZipFile, OSError):
        pass  # unreadable past this point: the unpickler's refusal says so
    return sorted(set(found))


def _refusal(path: Path, allowed: tuple[str, ...], trust_hint: Optional[str]) -> UntrustedPickle:
    torch_allowed = set(torch.serialization._weights_only_unpickler._get_allowed_globals())
    unexpected = [name for name in named_globals(path) if name not in allowed and name not in torch_allowed]
    if not unexpected:
        return UntrustedPickle(
            f"Cannot read {path}: it is corrupt, truncated or not a checkpoint file of this project (the weights-only "
            "reader refused it); re-save it from the run that wrote it, or remove it."
        )
    hint = f" If you trust whoever wrote it, pass {trust_hint}." if trust_hint else ""
    return UntrustedPickle(
        f"Refusing to read {path}: it holds objects of types {unexpected[:6]}, which a checkpoint of this project "
        f"never contains, and unpickling it could run code. Re-save it from the run that wrote it, or remove it.{hint}"
    )


def load_weights_only(path: str | os.PathLike, allowed: tuple[str, ...] = (), trust_hint: Optional[str] = None,
                      mmap: bool = False):
    """``torch.load`` of ``path`` with the weights-only unpickler: tensors, plain containers and the ``allowed`` names
    (as stand-ins). Anything else, or a damaged file, is an ``UntrustedPickle`` naming the file (torch's own text,
    which advises the full unpickler, is never shown)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_stand_ins(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise _refusal(path, allowed, trust_hint) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise UntrustedPickle(
            f"Cannot read {path}: the file is corrupt or truncated ({reason}); re-save it from the run that wrote it."
        ) from None


def check_pickle(path: str | os.PathLike, allowed: tuple[str, ...] = (), trust_hint: Optional[str] = None) -> None:
    """Read ``path`` with the weights-only unpickler (tensor data memory-mapped, not read) and drop the result; raise
    ``UntrustedPickle`` naming the file when it holds anything but tensors, containers and ``allowed``."""
    load_weights_only(path, allowed, trust_hint, mmap=zipfile.is_zipfile(path))


def pickle_files(folder: str | os.PathLike) -> list[Path]:
    """Every pickle-format file under ``folder`` (DeepSpeed's ``global_stepN/`` included) that a resume may read."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix in PICKLE_SUFFIXES and p.name not in NEVER_READ)


def check_resume_files(folder: str | os.PathLike, trusted: bool = False) -> list[Path]:
    """Before resuming from ``folder``: check each of its pickle-format files (``RESUME_TYPES`` allowed); returns
    them. ``trusted`` (``--trust_checkpoint``) skips the check, with a warning."""
    files = pickle_files(folder)
    if trusted:
        if files:
            logger.warning("%s: not checking %d pickle file(s) of %s before resuming.", TRUST_FLAG, len(files), folder)
        return files
    for path in files:
        check_pickle(path, RESUME_TYPES, trust_hint=f"{TRUST_FLAG} (it trusts every file of {folder})")
    return files


def weight_pickles(folder: str | os.PathLike) -> list[Path]:
    """The pickle-format weight files a load reads from ``folder``: transformers' ``pytorch_model*.bin``, peft's
    ``adapter_model.bin``, LLaVA's ``mm_projector.bin`` and ``non_lora_trainables.bin``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = ("adapter_model.bin", "mm_projector.bin", "non_lora_trainables.bin")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and (p.name in names or (p.name.startswith("pytorch_model") and p.suffix == ".bin")))


def check_weight_pickles(folder: str | os.PathLike) -> None:
    """Before loading from ``folder``: its pickle-format weight files hold tensors only (else a clear refusal)."""
    for path in weight_pickles(folder):
        check_pickle(path)
