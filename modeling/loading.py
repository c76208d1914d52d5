"""Strict loading: a checkpoint whose tensors do not match the model is an error, never random weights."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

#: safetensors dtype names of floating-point tensors.
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})


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
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        except RuntimeError as error:
            if "ignore_mismatched_sizes" not in str(error):
                raise
            shapes = _shape_problems(cls, pretrained_model_name_or_path, kwargs.get("subfolder") or "", kwargs.get("config"))
            raise WeightsMismatchError(
                f"{pretrained_model_name_or_path}: the weights do not fit {cls.__name__}: tensors of another shape than the "
                f"model's {shapes}. The file belongs to another model (or another configuration) or was edited."
            ) from None
        problems = [
            f"{kind.replace('_', ' ')} {sorted(map(str, info[kind]))[:8]}{' …' if len(info[kind]) > 8 else ''} ({len(info[kind])})"
            for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
            if info.get(kind)
        ]
        problems += _dtype_problems(model, pretrained_model_name_or_path, kwargs.get("subfolder") or "")
        if problems:
            raise WeightsMismatchError(
                f"{pretrained_model_name_or_path}: the weights do not fit {cls.__name__}: {'; '.join(problems)}. "
                "The file belongs to another model or is incomplete."
            )
        return (model, info) if wants_info else model


def _header(source: str | os.PathLike, subfolder: str = "") -> dict[str, tuple[str, list[int]]]:
    """Tensor name -> (stored safetensors dtype, shape) of a checkpoint's weights: a local
    directory, or a Hub repository already in the local cache (else ``{}``)."""
    folder = Path(source) / subfolder
    if folder.is_dir():
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            files = [folder / name for name in names]
        else:
            files = [folder / "model.safetensors"]
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(source), "model.safetensors", subfolder=subfolder or None)
        files = [Path(cached)] if isinstance(cached, str) else []
    tensors: dict[str, tuple[str, list[int]]] = {}
    for file in files:
        if not file.is_file():
            continue
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        tensors.update({name: (info["dtype"], info["shape"]) for name, info in header.items() if name != "__metadata__"})
    return tensors


def stored_dtypes(source: str | os.PathLike, subfolder: str = "") -> dict[str, str]:
    """Tensor name -> stored safetensors dtype (``"F32"``, ``"I8"``, ...) of a checkpoint's weights:
    a local directory, or a Hub repository already in the local cache (else ``{}``)."""
    return {name: dtype for name, (dtype, _) in _header(source, subfolder).items()}


def stored_shapes(source: str | os.PathLike, subfolder: str = "") -> dict[str, list[int]]:
    """Tensor name -> stored shape, read like :func:`stored_dtypes`."""
    return {name: shape for name, (_, shape) in _header(source, subfolder).items()}


def _shape_problems(cls, source, subfolder: str, config=None) -> list[str]:
    """``"name: stored [a, b], model [c, d]"`` for each tensor whose stored shape the model does not have."""
    import torch

    if config is None:
        config = cls.config_class.from_pretrained(source, subfolder=subfolder or "")
    with torch.device("meta"):
        expected = {k: list(v.shape) for k, v in cls(config).state_dict().items()}
    stored = stored_shapes(source, subfolder)
    return sorted(f"{k}: stored {stored[k]}, model {expected[k]}" for k in stored.keys() & expected.keys() if stored[k] != expected[k])[:8]


def _dtype_problems(model, source, subfolder: str) -> list[str]:
    """A floating-point tensor of ``model`` stored as integers (or the reverse): the values were cast."""
    stored = stored_dtypes(source, subfolder)
    wrong = [
        f"{name} ({dtype})"
        for name, tensor in model.state_dict().items()
        if (dtype := stored.get(name)) is not None and (dtype in FLOAT_DTYPES) != tensor.is_floating_point()
    ]
    if not wrong:
        return []
    return [f"tensors stored with a dtype that does not fit them {sorted(wrong)[:8]}{' …' if len(wrong) > 8 else ''} ({len(wrong)})"]


def required_keys(module, keys) -> list[str]:
    """``keys`` less those the module's class allows a weights file to lack
    (``_keys_to_ignore_on_load_missing``: e.g. the learned codec's EMA training statistics)."""
    import re

    patterns = getattr(module, "_keys_to_ignore_on_load_missing", None) or []
    return [key for key in keys if not any(re.search(pattern, key) for pattern in patterns)]


__all__ = ["FLOAT_DTYPES", "StrictLoadingMixin", "WeightsMismatchError", "required_keys", "stored_dtypes", "stored_shapes"]
