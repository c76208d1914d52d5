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

from .aligner import Alignment, AlignmentError, EllaVAlignerConfig, EllaVAlignerModel, train_aligner, viterbi_align
from .audio import AudioError, load_audio, prepare_waveform
from .codecs import AudioCodec, EncodecCodec, MelCodec, fit_mel_codec
from .corpus import CorpusProblem, Utterance, read_corpus, split_by_prompt
from .processing_ella_v import EllaVProcessor
from .textgrid_alignment import TextGridMismatch, textgrid_durations

__all__ += [
    "Alignment",
    "AlignmentError",
    "AudioCodec",
    "AudioError",
    "CorpusProblem",
    "EllaVAlignerConfig",
    "EllaVAlignerModel",
    "EllaVProcessor",
    "EncodecCodec",
    "MelCodec",
    "TextGridMismatch",
    "Utterance",
    "fit_mel_codec",
    "load_audio",
    "prepare_waveform",
    "read_corpus",
    "split_by_prompt",
    "textgrid_durations",
    "train_aligner",
    "viterbi_align",
]
