"""EnCodec (the paper's codec) behind this package's codec interface.

transformers' ``EncodecModel`` returns codes as ``[chunks, B, K, T]`` and takes the bandwidth per
call. :class:`EllaVEncodecModel` fixes the bandwidth in its config (6 kbps = 8 codebooks of 1024 at
75 Hz for ``facebook/encodec_24khz``, the paper's setting) and gives the common interface:
``encode(input_values [B, 1, S]) -> audio_codes [B, K, T]``, ``decode(audio_codes [B, K', T]) ->
audio_values [B, 1, S']``; ``num_codebooks`` is a config property.

    codec = EllaVEncodecModel.from_encodec("facebook/encodec_24khz", bandwidth=6.0)
"""

from __future__ import annotations

import math

import torch
from transformers import EncodecConfig, EncodecModel

from .code_vectors import summed_code_vectors
from .loading import StrictLoadingMixin


class EllaVEncodecConfig(EncodecConfig):
    """``EncodecConfig`` with the bandwidth this package uses.

    Args:
        bandwidth: Target bandwidth in kbps; one of ``target_bandwidths``. Default: 6.0 (the paper's
            setting) when the model has it, else its highest.
        kwargs: ``EncodecConfig`` fields.
    """

    model_type = "ella_v_encodec"

    bandwidth: float | None = None

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        if self.bandwidth is None:
            self.bandwidth = 6.0 if 6.0 in self.target_bandwidths else max(self.target_bandwidths)
        if self.bandwidth not in self.target_bandwidths:
            raise ValueError(f"bandwidth {self.bandwidth} not in the EnCodec target_bandwidths {list(self.target_bandwidths)}")

    @property
    def num_codebooks(self) -> int:
        """Codebooks at ``bandwidth``: bits per second / (frame rate x bits per code)."""
        return int(self.bandwidth * 1000 // (self.frame_rate * math.log2(self.codebook_size)))


class EllaVEncodecModel(StrictLoadingMixin, EncodecModel):
    """``EncodecModel`` with the package's codec interface (see the module docstring)."""

    config_class = EllaVEncodecConfig

    #: What ``from_source(None)`` loads: the paper's codec (24 kHz, 6 kbps = 8 x 1024 at 75 Hz).
    DEFAULT_SOURCE = "facebook/encodec_24khz"

    @classmethod
    def from_source(cls, source: str | None = None) -> EllaVEncodecModel:
        """A codec saved by this package, or transformers' EnCodec weights (default: ``facebook/encodec_24khz``)."""
        from transformers import AutoConfig

        path = source or cls.DEFAULT_SOURCE
        if AutoConfig.from_pretrained(path).model_type == cls.config_class.model_type:  # saved by us
            return cls.from_pretrained(path)
        return cls.from_encodec(path)

    @classmethod
    def from_encodec(cls, name_or_path: str = "facebook/encodec_24khz", bandwidth: float | None = None, **kwargs) -> EllaVEncodecModel:
        """Load transformers' EnCodec weights (e.g. ``facebook/encodec_24khz``) with this interface."""
        config = EncodecConfig.from_pretrained(name_or_path, **kwargs).to_dict()
        config.pop("model_type", None)
        return cls.from_pretrained(name_or_path, config=EllaVEncodecConfig(**config, bandwidth=bandwidth), **kwargs)

    @torch.no_grad()
    def encode(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None = None, **kwargs) -> torch.LongTensor:
        """Waveform ``[B, 1, S]`` at ``config.sampling_rate`` -> codes ``[B, K, T]``."""
        out = super().encode(input_values, padding_mask, bandwidth=self.config.bandwidth, return_dict=True)
        return out.audio_codes[0]  # one chunk: the 24 kHz model does not chunk

    @torch.no_grad()
    def decode(
        self,
        audio_codes: torch.LongTensor,
        code_probabilities: torch.Tensor | None = None,
        first_code_probabilities: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Codes ``[B, K', T]`` -> waveform ``[B, 1, S]``.

        ``code_probabilities`` ``[B, K' - 1, T, codebook_size]``: distributions over the codes of
        levels 2..K' (the NAR's), decoded from their expected vectors; ``first_code_probabilities``
        ``[B, T, C_1]``: the first level likewise (the GAR's); see :mod:`.code_vectors`.
        """
        if code_probabilities is None and first_code_probabilities is None:
            return super().decode(audio_codes[None].long(), [None], return_dict=True).audio_values
        codebooks = [layer.codebook.embed for layer in self.quantizer.layers]  # [C, D] each
        latents = summed_code_vectors(codebooks, audio_codes.long(), code_probabilities, first_code_probabilities)  # [B, T, D]
        return self.decoder(latents.transpose(1, 2))  # [B, 1, S]


__all__ = ["EllaVEncodecConfig", "EllaVEncodecModel"]
