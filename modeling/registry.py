"""Registration of this package's configurations and models with transformers' Auto classes.

Importing this module registers every sub-model ``EllaVForTextToSpeech`` can be built from, so
``AutoConfig``/``AutoModel.from_config`` find them; the composite's module imports it, so Hub
remote code carries (and registers) them too.

Adding a codec: one module with a ``PreTrainedConfig`` (``sampling_rate``, ``frame_rate``,
``num_codebooks``, ``codebook_size``) and a ``PreTrainedModel`` (``encode(input_values [B, 1, S])
-> audio_codes [B, K, T]``, ``decode(audio_codes [B, K', T]) -> audio_values [B, 1, S']``), plus
one entry in :data:`CODECS`.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .aligner_ella_v import EllaVAlignerConfig, EllaVAlignerModel
from .codec_encodec import EllaVEncodecConfig, EllaVEncodecModel
from .codec_learned import EllaVCodecConfig, EllaVCodecModel
from .codec_mel import EllaVMelCodecConfig, EllaVMelCodecModel
from .configuration_ella_v import EllaVConfig, EllaVNARConfig
from .modeling_ella_v import EllaVForCausalLM, EllaVModel, EllaVNARModel

#: Every codec a checkpoint can hold: (config class, model class).
CODECS = (
    (EllaVCodecConfig, EllaVCodecModel),
    (EllaVMelCodecConfig, EllaVMelCodecModel),
    (EllaVEncodecConfig, EllaVEncodecModel),
)
#: Every other sub-model: the built-in aligner, the GAR and the NAR.
SUB_MODELS = ((EllaVAlignerConfig, EllaVAlignerModel), (EllaVConfig, EllaVModel), (EllaVNARConfig, EllaVNARModel))

for _config, _model in CODECS + SUB_MODELS:
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
AutoModelForCausalLM.register(EllaVConfig, EllaVForCausalLM, exist_ok=True)

__all__ = ["CODECS", "SUB_MODELS"]
