"""Every use of transformers' private or internal machinery, in one place, each behind a feature check.

ella-v-hf builds on transformers' public API: ``PreTrainedModel``, ``PreTrainedConfig``,
``GenerationMixin.generate()`` with ``LogitsProcessor``/``StoppingCriteria``, ``Cache``/``DynamicCache``,
``masking_utils``, ``ALL_ATTENTION_FUNCTIONS``, ``ProcessorMixin``, ``GenerationConfig`` and the Auto
classes: the building blocks every model file in transformers imports. Where a feature needs more
than that, the touch is here, with what it uses, why no public way exists, and the transformers
versions it was checked on (:data:`TESTED_TRANSFORMERS`, the range ``setup.py`` declares and CI
installs: the newest allowed release and the declared lower bound, each in a fresh environment).

The touches:

``_get_candidate_generator`` / ``_assisted_decoding`` / ``CandidateGenerator`` (jump-forward decoding)
    :mod:`.jump_forward` feeds the tokens the phoneme-advance rule forces to transformers' own
    assisted-decoding loop as candidates. transformers has no public way to plug a candidate
    generator into ``generate()`` (only ``assistant_model`` and ``prompt_lookup_num_tokens``), so
    the model overrides the private ``_get_candidate_generator`` hook, and the loop reads whatever
    attributes it expects of a candidate generator (5.25 added ``num_drafting_tokens``, which broke
    5.24's code). Jump-forward is therefore opt-in (``jump_forward=True``), never on the default
    path, and :func:`jump_forward_unsupported` checks the hooks and the version: outside
    :data:`JUMP_FORWARD_VERIFIED` it warns once and the call decodes step by step instead
    (same structure and distributions; it only saves forwards).

``GenerationConfig._get_default_generation_params()``
    :meth:`~.generation_ella_v.EllaVGenerationConfig.check_supported` refuses decoding options the
    TTS model cannot honour, but must let through a field that merely holds transformers' global
    default (a saved ``num_beams=1``). transformers keeps those defaults in this private static
    method; where it is missing, :func:`default_generation_params` falls back to the values of a
    fresh ``GenerationConfig()`` (public), which covers the fields it sets.

The sampling warpers' order (:func:`sampling_warpers`)
    :class:`~.generation_ella_v.EllaVFirstLevelRecorder` needs the distribution each code is drawn
    from, i.e. the scores after the stock warpers. It builds them from the public warper classes in
    the order the private ``GenerationMixin._get_logits_processor`` uses (a mirror, no call);
    ``tests/test_generation.py`` checks it against ``generate(output_scores=True)`` on every CI run.

``_auto_class`` (saving without remote code: :func:`without_remote_code`)
    ``save_pretrained`` copies a class's module as remote code when the class was registered for an
    Auto class (``register_for_auto_class``), a class-level decision with no per-call switch. The
    bundled demos are saved as config and weights only, so the attribute is cleared for that call.
    Where transformers no longer has the attribute, the call raises :class:`TransformersCompatibilityError`.

``adjust_generation_fn``'s positional arguments (:func:`adjust_generation_arguments`)
    ``from_pretrained`` calls the model's ``adjust_generation_fn`` (a public ``GenerationMixin``
    method the TTS model overrides to load its own generation config class) with the loading
    arguments positionally. They are bound by name from the stock method's own signature.

``config._attn_implementation`` (:func:`attention_function`)
    The attention kernel selected by ``from_pretrained(attn_implementation=...)``; transformers' own
    model files read the same attribute. Missing, the eager kernel is used.

Sub-configurations' ``_name_or_path`` and ``auto_map`` keys
    Dictionary keys of a serialised config, not an API: ``EllaVTTSConfig.to_dict`` pops them from its
    sub-configurations (machine paths; the composite's remote code serves them). A missing key is fine.

Auto-module names (``ella_v_hf/__init__.py``, which cannot import this module: it imports neither torch nor transformers)
    ``import ella_v_hf`` stays cheap (registering eagerly costs about 8 s of imports) and registers
    the package's classes when transformers' Auto modules (``transformers.models.auto.{configuration,
    modeling,tokenization,processing}_auto``) are imported. ``tests/test_transformers_compat.py``
    checks that those modules still exist in the installed transformers.

This module imports only the standard library, torch and transformers: it travels as remote code.
"""

from __future__ import annotations

import importlib.util
import inspect
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import transformers
from transformers import GenerationConfig, GenerationMixin
from transformers.generation.logits_process import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    LogitsProcessor,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopHLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

#: transformers releases (major.minor) that CI installs and tests: the declared lower bound and the
#: newest release the declared range allows. ``setup.py`` allows exactly these.
TESTED_TRANSFORMERS: tuple[str, ...] = ("5.24", "5.25")
#: Releases on which jump-forward's candidate-generator contract was verified (tests run it on each).
JUMP_FORWARD_VERIFIED: tuple[str, ...] = ("5.24", "5.25")


class TransformersCompatibilityError(RuntimeError):
    """The installed transformers lacks an internal that this feature needs."""


def transformers_release(version: str | None = None) -> str:
    """``"5.25"`` for ``"5.25.0"`` (default: the installed transformers)."""
    parts = (version or transformers.__version__).split(".")
    return ".".join(parts[:2])


def _versions_note() -> str:
    return (
        f"installed transformers {transformers.__version__}; ella-v-hf is tested with "
        f"{', '.join(v + '.x' for v in TESTED_TRANSFORMERS)} (pip install 'transformers>={TESTED_TRANSFORMERS[0]},"
        f"<{_next_minor(TESTED_TRANSFORMERS[-1])}')"
    )


def _next_minor(release: str) -> str:
    major, minor = release.split(".")
    return f"{major}.{int(minor) + 1}"


# -- jump-forward -------------------------------------------------------------------------------
def jump_forward_unsupported(version: str | None = None) -> str | None:
    """Why jump-forward decoding cannot run on this transformers, or ``None`` when it can.

    Args:
        version: A transformers version to judge (default: the installed one; tests pass others).
    """
    missing = [name for name in ("_get_candidate_generator", "_assisted_decoding") if not hasattr(GenerationMixin, name)]
    if importlib.util.find_spec("transformers.generation.candidate_generator") is None:
        missing.append("transformers.generation.candidate_generator")
    if missing:
        return f"transformers {version or transformers.__version__} has no {', '.join(missing)}"
    release = transformers_release(version)
    if release not in JUMP_FORWARD_VERIFIED:
        return (
            f"its assisted-decoding contract was verified on transformers {', '.join(JUMP_FORWARD_VERIFIED)}, "
            f"not on {version or transformers.__version__}"
        )
    return None


_warned: set[str] = set()


def jump_forward_available() -> bool:
    """``True`` where jump-forward can run; otherwise warns once (per reason) and returns ``False``:
    the caller decodes step by step (the same structure and distributions, a few more forwards)."""
    reason = jump_forward_unsupported()
    if reason is None:
        return True
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"jump_forward=True ignored: {reason}. Decoding step by step instead.", stacklevel=3)
    return False


def candidate_generator_base() -> type:
    """transformers' ``CandidateGenerator`` base class (only called where jump-forward is available)."""
    from transformers.generation.candidate_generator import CandidateGenerator

    return CandidateGenerator


# -- generation config ----------------------------------------------------------------------------
def default_generation_params() -> dict[str, Any]:
    """transformers' global generation defaults (a field holding one is not a user's choice)."""
    private = getattr(GenerationConfig, "_get_default_generation_params", None)
    if callable(private):
        return dict(private())
    return {key: value for key, value in GenerationConfig().to_dict().items() if not key.startswith("_")}


def sampling_warpers(generation_config: GenerationConfig, device: Any = "cpu") -> list[LogitsProcessor]:
    """The warpers the stock ``generate()`` appends after every other processor when sampling.

    The same fields, the same stock classes, the same order (temperature, top-h, top-k, top-p, min-p,
    typical, epsilon, eta) as transformers' ``GenerationMixin._get_logits_processor`` builds for one
    beam (``tests/test_generation.py`` checks the result against ``generate(output_scores=True)``).
    Empty for greedy decoding.
    """
    c = generation_config
    if not c.do_sample:
        return []
    warpers: list[LogitsProcessor] = []
    if c.temperature is not None and c.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(c.temperature))
    if c.top_h is not None:
        warpers.append(TopHLogitsWarper(top_h=c.top_h))
    if c.top_k is not None and c.top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=c.top_k, min_tokens_to_keep=1))
    if c.top_p is not None and c.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=c.top_p, min_tokens_to_keep=1))
    if c.min_p is not None:
        warpers.append(MinPLogitsWarper(min_p=c.min_p, min_tokens_to_keep=1))
    if c.typical_p is not None and c.typical_p < 1.0:
        warpers.append(TypicalLogitsWarper(mass=c.typical_p, min_tokens_to_keep=1))
    if c.epsilon_cutoff is not None and 0.0 < c.epsilon_cutoff < 1.0:
        warpers.append(EpsilonLogitsWarper(epsilon=c.epsilon_cutoff, min_tokens_to_keep=1))
    if c.eta_cutoff is not None and 0.0 < c.eta_cutoff < 1.0:
        warpers.append(EtaLogitsWarper(epsilon=c.eta_cutoff, min_tokens_to_keep=1, device=device))
    return warpers


def adjust_generation_arguments(args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Name the loading arguments ``from_pretrained`` passes to ``adjust_generation_fn`` after its
    first four (``generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path``),
    from the stock method's signature: ``{"cache_dir": ..., "revision": ..., ...}``."""
    names = [
        p.name
        for p in inspect.signature(GenerationMixin.adjust_generation_fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ][5:]  # self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path
    if len(args) > len(names):
        raise TransformersCompatibilityError(
            f"adjust_generation_fn received {len(args)} loading arguments, its signature names {len(names)}: {_versions_note()}."
        )
    return {**dict(zip(names, args)), **kwargs}


# -- saving ---------------------------------------------------------------------------------------
@contextmanager
def without_remote_code(objects: Sequence[Any]) -> Iterator[None]:
    """Within the block, ``save_pretrained`` of ``objects`` (models, configs, processors, tokenizers)
    copies no remote code: ``_auto_class`` is cleared on each object and on its class (models ask
    the class, ``is_remote_code()``), and restored after the block.

    Raises:
        TransformersCompatibilityError: transformers no longer steers ``custom_object_save`` by ``_auto_class``.
    """
    for obj in objects:
        if not hasattr(type(obj), "_auto_class"):
            raise TransformersCompatibilityError(
                f"{type(obj).__name__} has no _auto_class, which save_pretrained(remote_code=False) relies on: {_versions_note()}."
            )
    owners = [*objects, *{type(obj) for obj in objects if "_auto_class" in vars(type(obj))}]
    saved = [("_auto_class" in vars(owner), vars(owner).get("_auto_class")) for owner in owners]
    for owner in owners:
        owner._auto_class = None
    try:
        yield
    finally:
        for owner, (owned, value) in zip(owners, saved):
            if owned:
                owner._auto_class = value
            else:
                delattr(owner, "_auto_class")


# -- attention ------------------------------------------------------------------------------------
def attention_function(config: Any, eager: Callable) -> Callable:
    """The attention kernel ``config`` selects (``from_pretrained(attn_implementation=...)``), or ``eager``."""
    return ALL_ATTENTION_FUNCTIONS.get_interface(getattr(config, "_attn_implementation", "eager"), eager)


__all__ = [
    "JUMP_FORWARD_VERIFIED",
    "TESTED_TRANSFORMERS",
    "TransformersCompatibilityError",
    "adjust_generation_arguments",
    "attention_function",
    "candidate_generator_base",
    "default_generation_params",
    "jump_forward_available",
    "jump_forward_unsupported",
    "sampling_warpers",
    "transformers_release",
    "without_remote_code",
]
