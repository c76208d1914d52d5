"""Strict loading: a checkpoint whose tensors do not match the model is an error, never random weights."""

from __future__ import annotations


class WeightsMismatchError(ValueError):
    """The weights file lacks tensors the model needs, or holds tensors it does not have."""


class StrictLoadingMixin:
    """``from_pretrained`` that refuses missing, unexpected or mismatched tensors, naming them.

    transformers' default is to warn and initialise missing weights randomly, so a weights file
    of another model (or with no model tensors at all) would load and produce noise.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        problems = [
            f"{kind.replace('_', ' ')} {sorted(map(str, info[kind]))[:8]}{' …' if len(info[kind]) > 8 else ''} ({len(info[kind])})"
            for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
            if info.get(kind)
        ]
        if problems:
            raise WeightsMismatchError(
                f"{pretrained_model_name_or_path}: the weights do not fit {cls.__name__}: {'; '.join(problems)}. "
                "The file belongs to another model or is incomplete."
            )
        return (model, info) if wants_info else model


def required_keys(module, keys) -> list[str]:
    """``keys`` less those the module's class allows a weights file to lack
    (``_keys_to_ignore_on_load_missing``: e.g. the learned codec's EMA training statistics)."""
    import re

    patterns = getattr(module, "_keys_to_ignore_on_load_missing", None) or []
    return [key for key in keys if not any(re.search(pattern, key) for pattern in patterns)]


__all__ = ["StrictLoadingMixin", "WeightsMismatchError", "required_keys"]
