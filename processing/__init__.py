"""Text and audio <-> tokens: phoneme tokenizer, codecs, aligners, EllaVProcessor, dataset preparation.

Installed as ``ella_v_hf.processing``.
"""

from .text_normalization import normalize_text
from .tokenization_ella_v import SEPARATOR_TOKENS, WORD_BOUNDARY, EllaVPhonemeTokenizer, phonemize_words, words_to_tokens

__all__ = [
    "SEPARATOR_TOKENS",
    "WORD_BOUNDARY",
    "EllaVPhonemeTokenizer",
    "normalize_text",
    "phonemize_words",
    "words_to_tokens",
]
