"""Each backbone's own inference flags, found without importing any model code.

A backbone names a light function ``add_inference_args(parser)`` in the ``mung.inference_flags`` entry-point group
under the same name as its ``mung.backbones`` entry (``qwen = "qwen_noise.inference_flags:add_inference_args"``),
so that parsing a command line and printing its ``--help`` import no torch. A backbone that names none there is
loaded and asked (``Backbone.add_inference_args``), as before; backbones registered at run time are asked too.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

logger = logging.getLogger(__name__)

FLAGS_GROUP = "mung.inference_flags"


def add_backbone_args(parser: argparse.ArgumentParser) -> None:
    """Each registered and installed backbone's own inference flags."""
    backbones_module = sys.modules.get("mung.backbones")  # run-time registrations live there, already imported
    registered = list(getattr(backbones_module, "_registered", []))
    for backbone in registered:
        backbone.add_inference_args(parser)
    flag_functions = {point.name: point for point in entry_points(group=FLAGS_GROUP)}
    for point in entry_points(group="mung.backbones"):
        if any(type(b).__module__ == point.module and type(b).__name__ == point.attr for b in registered):
            continue
        hook = flag_functions.get(point.name)
        try:
            if hook is not None:
                hook.load()(parser)
            else:
                point.load()().add_inference_args(parser)
        except (ImportError, AttributeError) as err:
            logger.warning("Backbone %r (%s) cannot be imported and is skipped: %s", point.name, point.value, err)


def no_flags(parser: argparse.ArgumentParser) -> None:
    """The ``mung.inference_flags`` entry of a backbone without flags of its own (so it is not loaded to ask)."""
