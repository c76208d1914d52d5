"""What the network is: configurations, the GAR/NAR models and the sequence layout (interleave rule).

Everything here is self-contained (torch + transformers only) so ``save_pretrained`` can copy the
files to the Hub as remote code.
"""

from .configuration_ella_v import (
    DEFAULT_LOCAL_ADVANCE,
    PAPER_MAX_PHONE_SECONDS,
    EllaVBaseConfig,
    EllaVConfig,
    EllaVNARConfig,
)
from .modeling_ella_v import (
    EllaVForCausalLM,
    EllaVModel,
    EllaVNARModel,
    EllaVNAROutput,
    EllaVPreTrainedModel,
)
from .sequence_layout import (
    IGNORE_INDEX,
    LAYOUTS,
    GarSequence,
    LayoutError,
    LayoutSpec,
    ParsedGarSequence,
    TokenSpace,
    build_gar_sequence,
    frame_phoneme_ids,
    parse_gar_sequence,
    sequence_to_alignment_durations,
)

__all__ = [
    "DEFAULT_LOCAL_ADVANCE",
    "IGNORE_INDEX",
    "LAYOUTS",
    "PAPER_MAX_PHONE_SECONDS",
    "EllaVBaseConfig",
    "EllaVConfig",
    "EllaVForCausalLM",
    "EllaVModel",
    "EllaVNARConfig",
    "EllaVNARModel",
    "EllaVNAROutput",
    "EllaVPreTrainedModel",
    "GarSequence",
    "LayoutError",
    "LayoutSpec",
    "ParsedGarSequence",
    "TokenSpace",
    "build_gar_sequence",
    "frame_phoneme_ids",
    "parse_gar_sequence",
    "sequence_to_alignment_durations",
]

from .codec_mel import EllaVMelCodecConfig, EllaVMelCodecModel, LogMel

__all__ += ["EllaVMelCodecConfig", "EllaVMelCodecModel", "LogMel"]

from .generation_ella_v import EllaVPhonemeAdvanceLogitsProcessor
from .modeling_ella_v_tts import EllaVForTextToSpeech, EllaVTTSConfig, EllaVTTSOutput

__all__ += ["EllaVForTextToSpeech", "EllaVPhonemeAdvanceLogitsProcessor", "EllaVTTSConfig", "EllaVTTSOutput"]
