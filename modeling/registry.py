"""The codec registry, and the registration of every sub-model with transformers' Auto classes.

Importing this module registers every sub-model ``EllaVForTextToSpeech`` can be built from, so
``AutoConfig``/``AutoModel.from_config`` find them; the composite's module imports it, so Hub
remote code carries (and registers) them too.

Adding a codec: one module with a ``PreTrainedConfig`` (``sampling_rate``, ``frame_rate``,
``num_codebooks``, ``codebook_size``) and a ``PreTrainedModel`` (``encode(input_values [B, 1, S])
-> audio_codes [B, K, T]``, ``decode(audio_codes [B, K', T]) -> audio_values [B, 1, S']`` and a
``from_source(source: str | None)`` class method that loads it from a directory or Hub id), plus one
:func:`register_codec` line below. ``ella-v prepare --codec NAME`` and the composite model read
:data:`CODECS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .aligner_ella_v import EllaVAlignerConfig, EllaVAlignerModel
from .codec_encodec import EllaVEncodecConfig, EllaVEncodecModel
from .codec_learned import EllaVCodecConfig, EllaVCodecModel
from .codec_mel import EllaVMelCodecConfig, EllaVMelCodecModel
from .configuration_ella_v import EllaVConfig, EllaVNARConfig
from .modeling_ella_v import EllaVForCausalLM, EllaVModel, EllaVNARModel


@dataclass(frozen=True)
class Codec:
    """A registered codec: its ``ella-v prepare --codec`` name and its classes."""

    name: str
    config_class: type
    model_class: type

    def load(self, source: str | None = None):
        """The codec from ``source`` (a directory or Hub id; ``None``: the codec's own default)."""
        return self.model_class.from_source(source)


#: Every codec a checkpoint can hold, by name.
CODECS: dict[str, Codec] = {}


def register_codec(name: str, config_class: type, model_class: type) -> Codec:
    """Register a codec under ``name`` (for ``ella-v prepare --codec``) and with the Auto classes."""
    CODECS[name] = codec = Codec(name, config_class, model_class)
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    return codec


register_codec("learned", EllaVCodecConfig, EllaVCodecModel)
register_codec("mel", EllaVMelCodecConfig, EllaVMelCodecModel)
register_codec("encodec", EllaVEncodecConfig, EllaVEncodecModel)

#: Every other sub-model: the built-in aligner, the GAR and the NAR.
SUB_MODELS = ((EllaVAlignerConfig, EllaVAlignerModel), (EllaVConfig, EllaVModel), (EllaVNARConfig, EllaVNARModel))

for _config, _model in SUB_MODELS:
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
AutoModelForCausalLM.register(EllaVConfig, EllaVForCausalLM, exist_ok=True)

__all__ = ["CODECS", "SUB_MODELS", "Codec", "register_codec"]
