"""ella-v-hf: ELLA-V (alignment-guided sequence reordering for codec language models) for transformers.

``import ella_v_hf`` is cheap: it imports neither torch nor transformers. Public names are loaded
on first use (PEP 562), and the package's classes are registered with transformers' Auto classes
(``AutoConfig``, ``AutoModel``, ``AutoModelForCausalLM``, ``AutoModelForTextToWaveform``,
``AutoTokenizer``, ``AutoProcessor``) as soon as transformers' Auto machinery is imported — before
or after this package — so the usual pattern works:

```python
>>> import ella_v_hf  # noqa: F401
>>> from transformers import AutoModel
>>> model = AutoModel.from_pretrained("path/to/ella-v-checkpoint")  # doctest: +SKIP
```
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Any

__version__ = "0.1.0"

#: Public name -> submodule that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "DEFAULT_LOCAL_ADVANCE",
            "IGNORE_INDEX",
            "LAYOUTS",
            "PAPER_MAX_PHONE_SECONDS",
            "Alignment",
            "AlignmentError",
            "EllaVAlignerConfig",
            "EllaVAlignerModel",
            "EllaVBaseConfig",
            "EllaVCodecConfig",
            "EllaVCodecModel",
            "EllaVConfig",
            "EllaVEncodecConfig",
            "EllaVEncodecModel",
            "EllaVForCausalLM",
            "EllaVForTextToSpeech",
            "EllaVMelCodecConfig",
            "EllaVMelCodecModel",
            "EllaVModel",
            "EllaVNARConfig",
            "EllaVNARModel",
            "EllaVNAROutput",
            "EllaVAudioStreamer",
            "EllaVGenerationConfig",
            "EllaVPhonemeAdvanceLogitsProcessor",
            "EllaVPreTrainedModel",
            "EllaVTTSConfig",
            "EllaVTTSOutput",
            "GarSequence",
            "LayoutError",
            "LayoutSpec",
            "ParsedGarSequence",
            "TokenSpace",
            "build_gar_sequence",
            "parse_gar_sequence",
            "sequence_to_alignment_durations",
        ),
        "ella_v_hf.modeling",
    ),
    "EllaVPhonemeTokenizer": "ella_v_hf.processing",
    "EllaVProcessor": "ella_v_hf.processing",
    "PRESETS": "ella_v_hf.presets",
    "preset": "ella_v_hf.presets",
}

__all__ = sorted([*_EXPORTS, "__version__", "register_auto_classes"])

_AUTO_MODULES = frozenset(
    f"transformers.models.auto.{name}" for name in ("configuration_auto", "modeling_auto", "tokenization_auto", "processing_auto")
)
_state = {"registered": False, "registering": False}


def register_auto_classes() -> None:
    """Register the package's configurations, models, tokenizer and processor with transformers'
    Auto classes (idempotent; happens by itself, see the module docstring). Importing
    ``ella_v_hf.modeling`` and ``ella_v_hf.processing`` is what registers them."""
    if _state["registered"] or _state["registering"]:
        return
    _state["registering"] = True
    try:
        importlib.import_module("ella_v_hf.modeling")
        importlib.import_module("ella_v_hf.processing")
        _state["registered"] = True
    finally:
        _state["registering"] = False


def _register_if_possible() -> None:
    """Register now; if transformers is still half-imported (an Auto module finished loading in
    the middle of transformers' own imports), wait for the next Auto module or public name."""
    try:
        register_auto_classes()
    except (ImportError, AttributeError):
        pass


class _RegisterAfterAutoImport(importlib.abc.MetaPathFinder):
    """Post-import hook: once one of transformers' Auto modules has loaded, register the package."""

    def find_spec(self, fullname: str, path, target=None):
        if fullname not in _AUTO_MODULES or _state["registered"]:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        load = spec.loader.exec_module

        def exec_module(module) -> None:
            load(module)
            _register_if_possible()

        spec.loader.exec_module = exec_module
        return spec


if any(name in sys.modules for name in _AUTO_MODULES):
    _register_if_possible()
if not _state["registered"] and not any(isinstance(f, _RegisterAfterAutoImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterAutoImport())


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ella_v_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    if _EXPORTS[name] != "ella_v_hf.presets":
        _register_if_possible()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
