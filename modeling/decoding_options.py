"""The one table of decoding options: each row says how an option is spelled on the command line
and in an ``ella-v evaluate --sweep`` strategy, how its value is checked, whether it is an ELLA-V
field of :class:`~.generation_ella_v.EllaVGenerationConfig` (or a stock ``GenerationConfig`` field)
and which control the web demo shows for it.

Everything else is generated from :data:`DECODING_OPTIONS`: ``EllaVGenerationConfig``'s own fields
and their checks, ``ella-v synthesize``'s and ``ella-v evaluate``'s flags, ``--sweep`` parsing and the
web demo's sampling controls. Adding an option is one :class:`DecodingOption` row here, plus the
code that acts on the value.

This module imports only the standard library (it travels as remote code).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: How the NAR's codebooks 2..K become audio: ``"expected"`` decodes each from its expected code
#: vector under the NAR's distribution, ``"argmax"`` from its most likely code's vector.
NAR_DECODINGS = ("expected", "argmax")
#: How the GAR's first-codebook frames become audio: ``"code"`` decodes each frame's drawn code's
#: vector, ``"expected"`` its expected vector under the distribution the code was drawn from.
FIRST_LEVEL_DECODINGS = ("code", "expected")


def check_eop_quantile(value: Any) -> float | None:
    """``value`` if it is a valid ``eop_quantile`` (``None`` or a number in ``(0, 1)``); else ``ValueError``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0):
        raise ValueError(f"eop_quantile must be a number in (0, 1) or None, got {value!r}")
    return value


def parse_eop_quantile(text: str) -> float | None:
    """An ``eop_quantile`` written on a command line: ``off`` (or ``none``) -> ``None`` (EOP sampled like
    any token, the paper's decoding), else a number in ``(0, 1)``; ``ValueError`` otherwise."""
    if text.strip().lower() in ("off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"eop_quantile must be a number in (0, 1) or 'off', got {text!r}") from None
    return check_eop_quantile(value)


def check_guidance_scale(value: Any, allow_none: bool = True) -> float | None:
    """``None`` (no guidance; only with ``allow_none``) or a float > 0; raises ``ValueError`` otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"guidance_scale must be a number > 0 (1: no guidance), got {value!r}")
    return float(value)


def _number(kind: type, name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{name} takes {'a whole number' if kind is int else 'a number'}, got {text!r}") from None

    return parse


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {text!r}")
        return text

    return parse


def _boolean(name: str) -> Callable[[str], bool]:
    def parse(text: str) -> bool:
        value = text.strip().lower()
        if value in ("true", "on", "yes", "1"):
            return True
        if value in ("false", "off", "no", "0"):
            return False
        raise ValueError(f"{name} must be true or false, got {text!r}")

    return parse


def _in_range(name: str, test: Callable[[Any], bool], wanted: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and (isinstance(value, bool) or not test(value)):
            raise ValueError(f"{name} must be {wanted}, got {value!r}")

    return check


def _check_flag(name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value not in (None, True, False):
            raise ValueError(f"{name} must be True, False or None (off), got {value!r}")

    return check


@dataclass(frozen=True)
class DecodingOption:
    """One decoding option.

    Args:
        name: Its generation-config field (the ``generate()`` keyword and the ``--sweep`` key).
        help: One line for the CLI and the docs.
        parse: Text (a CLI value or a ``--sweep`` value) -> value; ``ValueError`` names what is wrong.
        check: Value -> ``ValueError`` when out of range (``None`` always passes: unset).
        own: An ELLA-V field of ``EllaVGenerationConfig`` (``False``: a stock ``GenerationConfig`` field).
        sampling: Meaningful only when sampling (refused with ``greedy`` in a ``--sweep`` strategy).
        cli: Offered as a flag of ``ella-v synthesize`` (``--name-with-dashes``).
        flag_only: A boolean flag (``--jump-forward``: on).
        choices: The values a choice option takes.
        demo: The web demo's control: ``{"slider": (low, high, step)}`` or ``{"number": True}``, with
            ``"label"``, optionally ``"unset"`` (the slider's value when the model sets none), ``"off_at"``
            (the slider value that means ``None``) and ``"guided_only"`` (shown for a GAR trained for
            guidance only); ``None``: no control.
    """

    name: str
    help: str
    parse: Callable[[str], Any]
    check: Callable[[Any], None] | None = None
    own: bool = False
    sampling: bool = False
    cli: bool = True
    flag_only: bool = False
    choices: tuple[str, ...] = ()
    demo: dict[str, Any] | None = field(default=None)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


DECODING_OPTIONS: tuple[DecodingOption, ...] = (
    DecodingOption(
        "top_p", "nucleus sampling: keep the smallest set of codes whose probability reaches P (default: the model's)",
        _number(float, "top_p"), _in_range("top_p", lambda v: 0.0 < v <= 1.0, "in (0, 1]"), sampling=True,
        demo={"slider": (0.05, 1.0, 0.05), "label": "top-p"},
    ),
    DecodingOption(
        "top_k", "sample among the K most likely codes (0: all)", _number(int, "top_k"),
        _in_range("top_k", lambda v: isinstance(v, int) and v >= 0, "a whole number >= 0 (0 = off)"), sampling=True,
    ),
    DecodingOption(
        "temperature", "sampling temperature (default: the model's)", _number(float, "temperature"),
        _in_range("temperature", lambda v: 0 < v < math.inf, "a finite number > 0 when sampling"), sampling=True,
        demo={"slider": (0.1, 1.5, 0.05), "label": "temperature", "unset": 1.0},
    ),
    DecodingOption(
        "max_frames_per_phone", "the frame cap per phoneme that forces EOP (default: the model's, 0.4 s)",
        _number(int, "max_frames_per_phone"),
        _in_range("max_frames_per_phone", lambda v: isinstance(v, int) and v >= 1, "a positive integer"), own=True,
        demo={"number": True, "label": "frame cap per phoneme (0 or empty: the model's)"},
    ),
    DecodingOption(
        "eop_quantile", "end each phoneme where the probability that it has ended reaches Q (0.5: its median length); "
        "'off': sample EOP like any token (the paper)", parse_eop_quantile, check_eop_quantile, own=True,
        demo={"slider": (0.0, 0.95, 0.05), "off_at": 0.0, "label": "phoneme length quantile (0: sample each phoneme's end, as the paper; "
              "0.5: its median length)"},
    ),
    DecodingOption(
        "guidance_scale", "classifier-free guidance on the text (1: none; needs a GAR trained with text dropout)",
        _number(float, "guidance_scale"), check_guidance_scale,
        demo={"slider": (1.0, 4.0, 0.25), "label": "guidance on the text (1: off; each step also scores the sequence "
              "without its text)", "guided_only": True},
    ),
    DecodingOption(
        "nar_decoding", "codebooks 2..K from their expected code vectors ('expected') or the NAR's most likely codes",
        _choice("nar_decoding", NAR_DECODINGS),
        _in_range("nar_decoding", lambda v: v in NAR_DECODINGS, f"one of {', '.join(map(repr, NAR_DECODINGS))}"),
        own=True, choices=NAR_DECODINGS,
    ),
    DecodingOption(
        "first_level_decoding", "a sampled frame's first level from its drawn code ('code') or from its expected vector "
        "under the distribution it was drawn from ('expected')", _choice("first_level_decoding", FIRST_LEVEL_DECODINGS),
        _in_range("first_level_decoding", lambda v: v in FIRST_LEVEL_DECODINGS, f"one of {', '.join(map(repr, FIRST_LEVEL_DECODINGS))}"),
        own=True, choices=FIRST_LEVEL_DECODINGS,
    ),
    DecodingOption(
        "jump_forward", "decode the tokens the ELLA-V rule forces in the forward of the token before them (opt-in: "
        "transformers' private assisted-decoding hooks)", _boolean("jump_forward"),
        _check_flag("jump_forward"), own=True, flag_only=True,
    ),
    DecodingOption(
        "vall_e_max_frames_per_phone", "VALL-E stops after this many frames per target phoneme on average",
        _number(int, "vall_e_max_frames_per_phone"),
        _in_range("vall_e_max_frames_per_phone", lambda v: isinstance(v, int) and v >= 1, "a positive integer"), own=True,
        cli=False,
    ),
    DecodingOption(
        "sentence_pause_seconds", "silence between the sentences of a long text", _number(float, "sentence_pause_seconds"),
        _in_range("sentence_pause_seconds", lambda v: v >= 0, ">= 0"), own=True, cli=False,
    ),
)


def parse_strategy(spec: str) -> dict[str, Any]:
    """An ``ella-v evaluate --sweep`` strategy -> ``generate()`` keyword arguments.

    ``"greedy"`` or sampling options (``"top_p=0.9,temperature=0.8"``), then any other options:
    ``"greedy,nar_decoding=argmax"``, ``"top_p=0.9,eop_quantile=off"``. A sampling strategy starts
    from plain sampling (``top_p`` 1, ``top_k`` 0, temperature 1), whatever the checkpoint's
    defaults, so that the strategy says exactly what runs.

    Raises:
        ValueError: An unknown option, a sampling option with ``greedy``, or a bad value (named).
    """
    parts = [part.strip() for part in spec.split(",") if part.strip()]
    greedy = bool(parts) and parts[0] == "greedy"
    kwargs: dict[str, Any] = {"do_sample": False} if greedy else {"do_sample": True, "top_p": 1.0, "top_k": 0, "temperature": 1.0}
    for part in parts[1:] if greedy else parts:
        key, sep, value = part.partition("=")
        option = next((o for o in DECODING_OPTIONS if o.name == key), None)  # read at call time (tests add rows)
        if option is None or not sep or (greedy and option.sampling):
            raise ValueError(
                f"Unknown decoding option {part!r} in {spec!r}; a strategy is greedy or sampling options "
                f"({', '.join(o.name + '=' for o in DECODING_OPTIONS if o.sampling)}), then any of "
                f"{', '.join(o.name + '=' for o in DECODING_OPTIONS if not o.sampling)}"
            )
        try:
            kwargs[key] = option.parse(value)
        except ValueError as error:
            raise ValueError(f"{part!r} in the strategy {spec!r}: {error}") from None
        if option.check is not None:
            option.check(kwargs[key])
    return kwargs


__all__ = [
    "DECODING_OPTIONS",
    "FIRST_LEVEL_DECODINGS",
    "NAR_DECODINGS",
    "DecodingOption",
    "check_eop_quantile",
    "check_guidance_scale",
    "parse_eop_quantile",
    "parse_strategy",
]
