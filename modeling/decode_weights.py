"""Weight-only half precision for the GAR's decoding steps on CPU.

A decoding step multiplies one row per sequence (two with classifier-free guidance) by every weight
matrix of the model: a matrix-vector product, whose time on a CPU is the kernel's and the weights'
memory traffic, not arithmetic. PyTorch's float16 matrix-vector kernel reads half the bytes of the
float32 path (and, on some CPUs, is faster than the BLAS's float32 kernel several times over; see
``docs/performance.md``). From 8 rows on, float32 is faster again, so only products with at most :data:`MAX_DECODE_ROWS` rows take this path (the
decoding steps, and the output head at the prefill's last position); the prefill's layers, the NAR,
training and every forward outside ``generate()`` stay in float32.

Activations stay float32: only the matrix product reads float16 weights (and float16 inputs); its
result is cast back, and biases are added in float32. Logits move by about 1e-3 relative, so sampled
sequences can differ from the float32 model's (``ella-v bench`` reports how many of its sentences drew
the same sequence as float32 decoding). Whole-model float16 (the stock ``dtype=torch.float16``) is
a different thing: with its norms, rotary embeddings and attention in float16 it gains less at one
row and loses at 16 (``ella-v bench`` times stock Llama both ways).

Each module that takes part (attention, feed-forward, the output head) implements
:class:`HalfDecodeMixin`: it names the linears whose weights it concatenates (q/k/v become one
matrix, gate/up another) and gets, while :func:`half_precision_decoding` is active, one half copy
per group, refreshed from the float32 weights at the start of every ``generate()`` call (so training
between two calls, or any other change to the weights, is always seen).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

#: Calls with at most this many rows (batch x positions) use the half copies: a guided decoding
#: step at batch 2. From 8 rows on float32 is faster.
MAX_DECODE_ROWS = 4

#: Accepted values of ``EllaVConfig.decode_weight_dtype``.
DECODE_WEIGHT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class HalfDecodeMixin:
    """A module whose linears can run from half-precision copies during decoding steps.

    Subclasses define :meth:`half_decode_groups`; their forward calls :meth:`half_linear` for a
    group, which returns ``None`` when the float32 path applies.
    """

    _half_store: dict[str, tuple[torch.Tensor, torch.Tensor | None]]
    _half_active: bool = False

    def half_decode_groups(self) -> dict[str, list[nn.Linear]]:
        """Group name -> the linears whose weights are stacked (output dim) into one matrix."""
        raise NotImplementedError

    def set_half_decoding(self, dtype: torch.dtype | None) -> None:
        """Refresh the half copies from the current weights and turn them on; ``None`` turns them off.

        The copies are refreshed in place (the same tensors, so a compiled forward keeps its
        graph) at every call: 3.3 ms for the demo GAR's 5.7 M parameters (one thread), and never
        stale, however the weights were changed since.
        """
        if dtype is None:
            self._half_active = False
            return
        store = self.__dict__.setdefault("_half_store", {})
        with torch.no_grad():
            for name, linears in self.half_decode_groups().items():
                weights = [linear.weight for linear in linears]
                rows = sum(w.shape[0] for w in weights)
                weight, _ = store.get(name, (None, None))
                if (
                    weight is None or weight.shape != (rows, weights[0].shape[1]) or weight.dtype != dtype
                    or weight.device != weights[0].device
                    # made under torch.inference_mode (the TTS's generate()) and refreshed outside it:
                    # an inference tensor cannot be written in place there
                    or (weight.is_inference() and not torch.is_inference_mode_enabled())
                ):
                    weight = torch.empty(rows, weights[0].shape[1], dtype=dtype, device=weights[0].device)  # [sum(out), in]
                start = 0
                for w in weights:
                    weight[start : start + w.shape[0]].copy_(w)
                    start += w.shape[0]
                biases = [linear.bias for linear in linears]
                bias = None if biases[0] is None else torch.cat([b.detach() for b in biases]).float()
                store[name] = (weight, bias)
        self._half_active = True

    def half_linear(self, name: str, x: torch.Tensor) -> torch.Tensor | None:
        """``x @ W_group^T (+ b)`` from the half copy, or ``None`` when the float32 path applies.

        Args:
            x: ``[..., in]`` float32 activations.

        Returns:
            ``[..., sum(out)]`` float32, or ``None`` (half decoding off, not float32, or more than
            :data:`MAX_DECODE_ROWS` rows).
        """
        if not self._half_active or x.dtype != torch.float32 or x.numel() > MAX_DECODE_ROWS * x.shape[-1]:
            return None
        weight, bias = self._half_store[name]
        out = F.linear(x.to(weight.dtype), weight).to(x.dtype)
        return out if bias is None else out + bias


def decode_weight_dtype(name: str | None) -> torch.dtype | None:
    """``"float16"`` / ``"bfloat16"`` / ``None`` -> the torch dtype (clear error otherwise)."""
    if name is None:
        return None
    if name not in DECODE_WEIGHT_DTYPES:
        raise ValueError(f"decode_weight_dtype must be one of {sorted(DECODE_WEIGHT_DTYPES)} or None, got {name!r}")
    return DECODE_WEIGHT_DTYPES[name]


@contextmanager
def half_precision_decoding(model: nn.Module, dtype: torch.dtype | None) -> Iterator[bool]:
    """Turn on the half copies of every :class:`HalfDecodeMixin` module of ``model`` for the block.

    Applies only to float32 weights on CPU (elsewhere, or with ``dtype=None``, nothing changes).
    Yields whether the copies are on.
    """
    modules = [m for m in model.modules() if isinstance(m, HalfDecodeMixin)]
    parameter = next(model.parameters(), None)
    usable = (
        dtype is not None and parameter is not None and parameter.device.type == "cpu" and parameter.dtype == torch.float32
    )
    if not usable:
        yield False
        return
    for module in modules:
        module.set_half_decoding(dtype)
    try:
        yield True
    finally:
        for module in modules:
            module.set_half_decoding(None)


__all__ = ["DECODE_WEIGHT_DTYPES", "MAX_DECODE_ROWS", "HalfDecodeMixin", "decode_weight_dtype", "half_precision_decoding"]
