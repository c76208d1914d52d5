"""ella-v-hf: ELLA-V (alignment-guided sequence reordering for codec language models) for transformers.

Importing the package registers the configurations and models with transformers' Auto classes:

```python
>>> import ella_v_hf  # registers "ella_v" and "ella_v_nar"
>>> from transformers import AutoModelForCausalLM
>>> model = AutoModelForCausalLM.from_pretrained("path/to/ella-v-gar")  # doctest: +SKIP
```
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForTextToWaveform,
    AutoProcessor,
    AutoTokenizer,
)

from .modeling import (
    DEFAULT_LOCAL_ADVANCE,
    IGNORE_INDEX,
    LAYOUTS,
    PAPER_MAX_PHONE_SECONDS,
    EllaVBaseConfig,
    EllaVConfig,
    EllaVForCausalLM,
    EllaVModel,
    EllaVNARConfig,
    EllaVNARModel,
    EllaVNAROutput,
    EllaVPreTrainedModel,
    GarSequence,
    LayoutError,
    LayoutSpec,
    ParsedGarSequence,
    TokenSpace,
    build_gar_sequence,
    parse_gar_sequence,
    sequence_to_alignment_durations,
)
from .modeling import EllaVForTextToSpeech, EllaVPhonemeAdvanceLogitsProcessor, EllaVTTSConfig, EllaVTTSOutput
from .modeling.codec_mel import EllaVMelCodecConfig, EllaVMelCodecModel
from .presets import PRESETS, preset
from .processing import EllaVAlignerConfig, EllaVAlignerModel, EllaVPhonemeTokenizer, EllaVProcessor

__version__ = "0.1.0"

AutoConfig.register(EllaVConfig.model_type, EllaVConfig, exist_ok=True)
AutoConfig.register(EllaVNARConfig.model_type, EllaVNARConfig, exist_ok=True)
AutoModel.register(EllaVConfig, EllaVModel, exist_ok=True)
AutoModel.register(EllaVNARConfig, EllaVNARModel, exist_ok=True)
AutoModelForCausalLM.register(EllaVConfig, EllaVForCausalLM, exist_ok=True)
for _config, _model in ((EllaVMelCodecConfig, EllaVMelCodecModel), (EllaVAlignerConfig, EllaVAlignerModel)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
AutoConfig.register(EllaVTTSConfig.model_type, EllaVTTSConfig, exist_ok=True)
AutoModel.register(EllaVTTSConfig, EllaVForTextToSpeech, exist_ok=True)
AutoModelForTextToWaveform.register(EllaVTTSConfig, EllaVForTextToSpeech, exist_ok=True)
for _config in (EllaVConfig, EllaVTTSConfig):
    AutoTokenizer.register(_config, slow_tokenizer_class=EllaVPhonemeTokenizer, exist_ok=True)
    AutoProcessor.register(_config, EllaVProcessor, exist_ok=True)

__all__ = [
    "DEFAULT_LOCAL_ADVANCE",
    "IGNORE_INDEX",
    "LAYOUTS",
    "PAPER_MAX_PHONE_SECONDS",
    "PRESETS",
    "EllaVBaseConfig",
    "EllaVAlignerConfig",
    "EllaVAlignerModel",
    "EllaVConfig",
    "EllaVForCausalLM",
    "EllaVForTextToSpeech",
    "EllaVMelCodecConfig",
    "EllaVMelCodecModel",
    "EllaVPhonemeTokenizer",
    "EllaVPhonemeAdvanceLogitsProcessor",
    "EllaVProcessor",
    "EllaVTTSConfig",
    "EllaVTTSOutput",
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
    "__version__",
    "build_gar_sequence",
    "parse_gar_sequence",
    "preset",
    "sequence_to_alignment_durations",
]
