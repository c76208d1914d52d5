"""ella-v-hf: ELLA-V (alignment-guided sequence reordering for codec language models) for transformers.

Importing the package registers the configurations and models with transformers' Auto classes:

```python
>>> import ella_v_hf  # registers "ella_v" and "ella_v_nar"
>>> from transformers import AutoModelForCausalLM
>>> model = AutoModelForCausalLM.from_pretrained("path/to/ella-v-gar")  # doctest: +SKIP
```
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

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
from .presets import PRESETS, preset

__version__ = "0.1.0"

AutoConfig.register(EllaVConfig.model_type, EllaVConfig, exist_ok=True)
AutoConfig.register(EllaVNARConfig.model_type, EllaVNARConfig, exist_ok=True)
AutoModel.register(EllaVConfig, EllaVModel, exist_ok=True)
AutoModel.register(EllaVNARConfig, EllaVNARModel, exist_ok=True)
AutoModelForCausalLM.register(EllaVConfig, EllaVForCausalLM, exist_ok=True)

__all__ = [
    "DEFAULT_LOCAL_ADVANCE",
    "IGNORE_INDEX",
    "LAYOUTS",
    "PAPER_MAX_PHONE_SECONDS",
    "PRESETS",
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
    "__version__",
    "build_gar_sequence",
    "parse_gar_sequence",
    "preset",
    "sequence_to_alignment_durations",
]
