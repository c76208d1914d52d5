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
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
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


def stored_dtypes(source: str | os.PathLike, subfolder: str = "") -> dict[str, str]:
    """Tensor name -> stored safetensors dtype (``"F32"``, ``"I8"``, ...) of a checkpoint's weights:
    a local directory, or a Hub repository already in the local cache (else ``{}``)."""
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
    dtypes: dict[str, str] = {}
    for file in files:
        if not file.is_file():
            continue
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        dtypes.update({name: info["dtype"] for name, info in header.items() if name != "__metadata__"})
    return dtypes


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


__all__ = ["FLOAT_DTYPES", "StrictLoadingMixin", "WeightsMismatchError", "required_keys", "stored_dtypes"]
