"""Residual-quantiser latents from codes, or from code distributions in expectation.

Every codec of this package decodes the sum of one vector per quantiser level. The NAR predicts a
distribution over each level 2..K's codes; decoding its argmax picks one vector per level even
where the NAR is unsure, and a wrong deep-level vector is as loud as a right one. The expected
vector ``sum_c p(c) e_c`` is the minimum-mean-square-error latent under the NAR's distribution:
confident levels keep their code's vector, unsure ones shrink towards their codebook's mean.
The first level can be decoded the same way from the distribution the GAR sampled each frame's
code from (``first_level_decoding="expected"``). This file needs only torch, so it travels as
remote code with a checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def summed_code_vectors(
    codebooks: Sequence[torch.Tensor],
    codes: torch.LongTensor,
    probabilities: torch.Tensor | None = None,
    first_probabilities: torch.Tensor | None = None,
) -> torch.Tensor:
    """The latents a residual quantiser decodes: ``[B, K', T]`` codes -> ``[B, T, D]``.

    Args:
        codebooks: At least ``K'`` codebooks; level ``k`` is ``[C_k, D]`` (its first ``C_k`` rows
            are the codes it uses).
        codes: ``[B, K', T]`` codes of the first ``K'`` levels, each within its codebook.
        probabilities: Optional ``[B, K' - 1, T, C]``: a distribution over the codes of each level
            after the first (the NAR's); those levels then add their expected vector instead of
            their code's.
        first_probabilities: Optional ``[B, T, C_1]`` with ``C_1`` at most the first codebook's size: a
            distribution over the first level's codes (the GAR's sampling distribution); the first
            level then adds its expected vector instead of its code's.

    Returns:
        ``[B, T, D]`` summed vectors.

    Raises:
        ValueError: More levels than codebooks, a code outside its codebook, or probabilities whose
            shape does not match the codes and codebooks.
    """
    batch, levels, frames = codes.shape
    if levels > len(codebooks):
        raise ValueError(f"{levels} codebooks given; the codec has {len(codebooks)}")
    for level in range(levels):
        size = codebooks[level].shape[0]
        level_codes = codes[:, level]  # [B, T]
        if level_codes.numel() and (level_codes.min() < 0 or level_codes.max() >= size):
            raise ValueError(f"codes of codebook {level} must lie in [0, {size})")
    if probabilities is not None:
        if probabilities.dim() != 4 or tuple(probabilities.shape[:3]) != (batch, levels - 1, frames):
            raise ValueError(
                f"probabilities must be [B, K' - 1, T, C] = [{batch}, {levels - 1}, {frames}, C] for codes of shape "
                f"{tuple(codes.shape)}, got {tuple(probabilities.shape)}"
            )
        for level in range(1, levels):
            if probabilities.shape[-1] != codebooks[level].shape[0]:
                raise ValueError(
                    f"probabilities cover {probabilities.shape[-1]} codes but codebook {level} has {codebooks[level].shape[0]}"
                )
    if first_probabilities is not None:
        if (
            first_probabilities.dim() != 3
            or tuple(first_probabilities.shape[:2]) != (batch, frames)
            or first_probabilities.shape[-1] > codebooks[0].shape[0]
        ):
            raise ValueError(
                f"first_probabilities must be [B, T, C_1] = [{batch}, {frames}, C_1] with C_1 <= {codebooks[0].shape[0]} for "
                f"codes of shape {tuple(codes.shape)}, got {tuple(first_probabilities.shape)}"
            )
        first = codebooks[0][: first_probabilities.shape[-1]]  # [C_1, D]
        total = first_probabilities.to(first.dtype) @ first  # [B, T, D]
    else:
        total = codebooks[0][codes[:, 0]]  # [B, T, D]
    for level in range(1, levels):
        if probabilities is None:
            total = total + codebooks[level][codes[:, level]]
        else:
            total = total + probabilities[:, level - 1].to(codebooks[level].dtype) @ codebooks[level]
    return total


__all__ = ["summed_code_vectors"]
