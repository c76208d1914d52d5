"""Kept for existing imports: the mel codec is fitted during preparation
(:mod:`ella_v_hf.processing.fit_mel_codec`)."""

from ..processing.fit_mel_codec import fit_mel_codec

__all__ = ["fit_mel_codec"]
