"""Registering MuNG with peft: the one place that extends peft's closed ``PeftType`` enum.

peft 0.21's ``register_peft_method`` only accepts names already listed in ``PeftType`` (and peft and transformers
read ``config.peft_type.value``, so a plain string will not do). Until peft offers an open registry (it should: a
new method should not have to touch peft's enum), the member is added here, once, guarded: an existing member
(a peft that learned MuNG, or a second import) is reused, never replaced.

The member's value, which peft writes as ``peft_type`` into ``adapter_config.json``, says what to import: a process
that loads the adapter without importing this module fails in peft with ``KeyError: 'MUNG (import
noise_generator.peft_method)'``, naming the module that teaches peft the method.
"""

from __future__ import annotations

import enum

MEMBER_NAME = "MUNG"
MEMBER_VALUE = "MUNG (import noise_generator.peft_method)"
METHOD_NAME = "mung"
PREFIX = "mung_"


def _add_enum_member(enum_cls: type[enum.Enum], name: str, value: str) -> enum.Enum:
    """Add ``name = value`` to the str enum ``enum_cls`` as if it had been declared there."""
    member = str.__new__(enum_cls, value)
    member._name_, member._value_ = name, value
    member.__objclass__ = enum_cls
    member.__init__(value)
    enum_cls._member_map_[name] = member
    enum_cls._value2member_map_[value] = member
    enum_cls._member_names_.append(name)
    type.__setattr__(enum_cls, name, member)
    return member


def mung_peft_type() -> enum.Enum:
    """``PeftType.MUNG``, added to peft's enum on first use."""
    from peft.utils.peft_types import PeftType

    member = PeftType.__members__.get(MEMBER_NAME)
    if member is None:
        member = _add_enum_member(PeftType, MEMBER_NAME, MEMBER_VALUE)
    return member


def register() -> None:
    """Teach peft the MuNG method (config, tuner, key prefix); a second call changes nothing.

    peft's ``register_peft_method`` fills three tables after checking that the member's value is its upper-case
    name; ours carries the import hint instead, so the tables are filled here, with the same uniqueness checks."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    from .config import MuNGConfig
    from .model import MuNGModel

    peft_type = mung_peft_type()
    if PEFT_TYPE_TO_TUNER_MAPPING.get(peft_type) is MuNGModel:
        return
    taken = [table for table in (PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING) if peft_type in table]
    if taken or PREFIX in PEFT_TYPE_TO_PREFIX_MAPPING.values():
        raise KeyError(f"peft already knows another method called {METHOD_NAME!r} or prefixed {PREFIX!r}; MuNG "
                       "cannot register under the same name.")
    PEFT_TYPE_TO_PREFIX_MAPPING[peft_type] = PREFIX
    PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] = MuNGConfig
    PEFT_TYPE_TO_TUNER_MAPPING[peft_type] = MuNGModel
