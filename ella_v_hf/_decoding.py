"""The decoding-option table (``modeling/decoding_options.py``) for the command line, loaded
without importing torch or transformers (``ella-v --help`` stays fast): the module is loaded from
its file and registered under its package name, so a later ``import ella_v_hf.modeling`` shares it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from types import ModuleType
from typing import Any

_NAME = "ella_v_hf.modeling.decoding_options"


def decoding_options() -> ModuleType:
    """The ``decoding_options`` module."""
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    package = importlib.util.find_spec("ella_v_hf.modeling")  # imports ella_v_hf only (cheap), not the package
    location = next(iter(package.submodule_search_locations))
    spec = importlib.util.spec_from_file_location(_NAME, f"{location}/decoding_options.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


def _argparse_type(option: Any):
    def parse(text: str) -> Any:
        try:
            return option.parse(text)  # its range is checked with the others before the model loads
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = option.name  # argparse names the type in its messages
    return parse


def add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    """``--greedy`` and one flag per command-line option of the table; an unset flag leaves the
    checkpoint's ``generation_config`` in charge (``argparse.SUPPRESS``)."""
    parser.add_argument("--greedy", action="store_true", help="greedy GAR decoding instead of sampling")
    for option in decoding_options().DECODING_OPTIONS:
        if not option.cli:
            continue
        if option.flag_only:
            parser.add_argument(option.flag, dest=option.name, action="store_const", const=True, default=argparse.SUPPRESS,
                                help=option.help)
        else:
            parser.add_argument(option.flag, dest=option.name, type=_argparse_type(option), default=argparse.SUPPRESS,
                                metavar="|".join(option.choices) if option.choices else option.name.split("_")[-1].upper(),
                                help=option.help + " (default: the model's generation_config)")


def decoding_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """``generate()`` options from the flags :func:`add_decoding_flags` added (unset ones left out)."""
    options: dict[str, Any] = {"do_sample": not args.greedy}
    for option in decoding_options().DECODING_OPTIONS:
        if option.cli and hasattr(args, option.name):
            options[option.name] = getattr(args, option.name)
    return options


__all__ = ["add_decoding_flags", "decoding_arguments", "decoding_options"]
