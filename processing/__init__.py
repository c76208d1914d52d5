"""Text and audio <-> model inputs: phoneme tokenizer, EllaVProcessor, audio I/O, corpus readers,
aligners (:mod:`.aligners`) and dataset preparation (:mod:`.prepare`).

Installed as ``ella_v_hf.processing``.
"""

from .audio import AudioError, load_audio, prepare_waveform
from .corpus import CorpusProblem, Utterance, read_corpus, split_by_prompt
from .processing_ella_v import EllaVProcessor
from .text_normalization import normalize_text
from .tokenization_ella_v import SEPARATOR_TOKENS, WORD_BOUNDARY, EllaVPhonemeTokenizer, phonemize_words, words_to_tokens

__all__ = [
    "SEPARATOR_TOKENS",
    "WORD_BOUNDARY",
    "AudioError",
    "CorpusProblem",
    "EllaVPhonemeTokenizer",
    "EllaVProcessor",
    "Utterance",
    "load_audio",
    "normalize_text",
    "phonemize_words",
    "prepare_waveform",
    "read_corpus",
    "split_by_prompt",
    "words_to_tokens",
]


def _register_auto_classes() -> None:
    from transformers import AutoProcessor, AutoTokenizer

    from ..modeling import EllaVConfig, EllaVTTSConfig

    for config in (EllaVConfig, EllaVTTSConfig):
        AutoTokenizer.register(config, slow_tokenizer_class=EllaVPhonemeTokenizer, exist_ok=True)
        AutoProcessor.register(config, EllaVProcessor, exist_ok=True)


_register_auto_classes()
