"""What the network is: configurations, the GAR/NAR models, the sequence layout (interleave rule),
the codecs, the built-in aligner and the composite text-to-speech model.

Every module imports only torch, numpy, transformers and its siblings (relatively), so
``save_pretrained`` copies the files verbatim as Hub remote code.
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
    frame_phonemes,
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
    "frame_phonemes",
    "parse_gar_sequence",
    "sequence_to_alignment_durations",
]

from .aligner_ella_v import Alignment, AlignmentError, EllaVAlignerConfig, EllaVAlignerModel, viterbi_align
from .codec_encodec import EllaVEncodecConfig, EllaVEncodecModel
from .codec_learned import EllaVCodecConfig, EllaVCodecModel
from .codec_mel import EllaVMelCodecConfig, EllaVMelCodecModel
from .generation_ella_v import (
    EllaVFirstLevelRecorder,
    EllaVGenerationConfig,
    EllaVPhonemeAdvanceLogitsProcessor,
)
from .mel import LogMel
from .modeling_ella_v_tts import EllaVForTextToSpeech, EllaVTTSConfig, EllaVTTSOutput
from .registry import CODECS
from .streaming_ella_v import EllaVAudioStreamer

__all__ += [
    "CODECS",
    "Alignment",
    "AlignmentError",
    "EllaVAlignerConfig",
    "EllaVAlignerModel",
    "EllaVCodecConfig",
    "EllaVCodecModel",
    "EllaVEncodecConfig",
    "EllaVEncodecModel",
    "EllaVForTextToSpeech",
    "EllaVMelCodecConfig",
    "EllaVMelCodecModel",
    "EllaVAudioStreamer",
    "EllaVGenerationConfig",
    "EllaVFirstLevelRecorder",
    "EllaVPhonemeAdvanceLogitsProcessor",
    "EllaVTTSConfig",
    "EllaVTTSOutput",
    "LogMel",
    "viterbi_align",
]
