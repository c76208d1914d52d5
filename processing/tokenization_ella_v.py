"""Phoneme tokenizer: text -> espeak-ng phonemes (through phonemizer) -> ids.

Token sequence of a text (``|`` = word boundary, punctuation = pause tokens)::

    "Hello, world!"  ->  | h ə l oʊ , w ɜː l d !

Every word is followed by exactly one *separator* token: its pause punctuation (``, . ? !``) if
it has one, else ``|``; one ``|`` opens the sentence. Separators are the tokens that may own
pause frames (or none) in an alignment: every acoustic frame belongs to exactly one token, and
text-only inference sees the same kind of sequence as training.

espeak-ng comes from the ``espeakng-loader`` wheel when it is installed (so ``pip`` alone
suffices, and every machine phonemises with the same espeak version), else from the system.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from transformers import PreTrainedTokenizer
from transformers.utils import logging

from .text_normalization import normalize_text

logger = logging.get_logger(__name__)

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}
DEFAULT_VOCAB_FILE = Path(__file__).with_name("vocab_en_us.json")

WORD_BOUNDARY = "|"
#: Punctuation -> pause token. Characters not listed (quotes, brackets' opening side…) are dropped.
PAUSE_PUNCTUATION = {
    ",": ",",
    ";": ",",
    ":": ",",
    "—": ",",
    "–": ",",
    ")": ",",
    "(": ",",
    ".": ".",
    "…": ".",
    "!": "!",
    "¡": "!",
    "?": "?",
    "¿": "?",
}
SEPARATOR_TOKENS = (WORD_BOUNDARY, ",", ".", "?", "!")
_STRIP = set(PAUSE_PUNCTUATION) | set("\"'«»“”‘’{}[]-")

_BACKENDS: dict[str, object] = {}


def _espeak_backend(language: str):
    """A cached phonemizer espeak backend for ``language`` (raises ValueError if unsupported)."""
    if language in _BACKENDS:
        return _BACKENDS[language]
    try:
        import espeakng_loader
        from phonemizer.backend.espeak.wrapper import EspeakWrapper

        EspeakWrapper.set_library(espeakng_loader.get_library_path())
        os.environ.setdefault("ESPEAK_DATA_PATH", espeakng_loader.get_data_path())
    except ImportError:  # fall back to a system espeak-ng
        pass
    import logging

    from phonemizer.backend import EspeakBackend

    quiet = logging.getLogger("ella_v_hf.phonemizer")  # word-count mismatches are expected with punctuation
    quiet.setLevel(logging.ERROR)
    try:
        backend = EspeakBackend(
            language,
            logger=quiet,
            preserve_punctuation=True,
            with_stress=False,
            language_switch="remove-flags",
            words_mismatch="ignore",
        )
    except RuntimeError as error:
        raise ValueError(f"Language {language!r} is not supported by espeak-ng: {error}") from error
    _BACKENDS[language] = backend
    return backend


def phonemize_words(texts: Sequence[str], language: str = "en-us", normalize: bool = True) -> list[list[tuple[list[str], str]]]:
    """Phonemise texts into words: for each text a list of ``(phonemes, separator)``.

    Args:
        texts: Raw texts.
        language: espeak language code.
        normalize: Spell out numbers, abbreviations and symbols first (:func:`normalize_text`).

    Returns:
        Per text, per word: the word's phoneme symbols and its separator token (``|`` or a pause).

    Raises:
        ValueError: Empty text, unsupported characters, unsupported language, or a text with nothing
            pronounceable (the message names the text).
    """
    from phonemizer.separator import Separator

    prepared = [normalize_text(t, language) if normalize else t for t in texts]
    for raw, text in zip(texts, prepared):
        if not text.strip():
            raise ValueError(f"Text {raw!r} is empty or whitespace only; nothing to synthesise.")
    outputs = _espeak_backend(language).phonemize(prepared, separator=Separator(phone=" ", word=" _ ", syllable=""), strip=True)
    result = []
    for raw, output in zip(texts, outputs):
        words: list[tuple[list[str], str]] = []
        for chunk in output.split(" _ "):
            phones, pauses = [], []
            for symbol in chunk.split():
                core = "".join(ch for ch in symbol if ch not in _STRIP)
                pauses.extend(PAUSE_PUNCTUATION[ch] for ch in symbol if ch in PAUSE_PUNCTUATION and ch not in "(¿¡")
                if core:
                    phones.append(core)
            separator = pauses[0] if pauses else WORD_BOUNDARY
            if phones:
                words.append((phones, separator))
            elif words and words[-1][1] == WORD_BOUNDARY and pauses:
                words[-1] = (words[-1][0], separator)  # free-standing punctuation ("word -- word")
        if not words:
            raise ValueError(f"Text {raw!r} contains nothing pronounceable.")
        result.append(words)
    return result


def words_to_tokens(words: Iterable[tuple[list[str], str]]) -> list[str]:
    """The tokenizer's sequence for phonemised words: ``| w1 sep1 w2 sep2 ...``."""
    tokens = [WORD_BOUNDARY]
    for phones, separator in words:
        tokens.extend(phones)
        tokens.append(separator)
    return tokens


def token_words(tokens: Sequence[str]) -> list[tuple[list[str], str]]:
    """Split a tokenizer sequence ``| w1-phones sep1 w2-phones sep2 …`` into ``[(phones, separator), …]``.

    Raises:
        ValueError: The sequence does not start with the word boundary token.
    """
    if not tokens or tokens[0] != WORD_BOUNDARY:
        raise ValueError(f"a token sequence starts with {WORD_BOUNDARY!r}, got {list(tokens[:3])}")
    words, phones = [], []
    for token in tokens[1:]:
        if token in SEPARATOR_TOKENS:
            words.append((phones, token))
            phones = []
        else:
            phones.append(token)
    if phones:
        raise ValueError("a token sequence ends with a separator")
    return words


class EllaVPhonemeTokenizer(PreTrainedTokenizer):
    """Phoneme tokenizer for ELLA-V (espeak-ng through phonemizer).

    Ids are phoneme indices ``0 .. vocab_size-1`` (the GAR's flat ids add an offset, see
    :class:`~ella_v_hf.modeling.TokenSpace`). No BOS/EOS are added: the layout adds its own.

    Args:
        vocab_file: JSON ``{symbol: id}``; ``None`` = the bundled English (en-us) inventory.
        language: espeak language code.
        normalize: Spell out numbers, abbreviations and symbols before phonemising.
        do_phonemize: If False, inputs are space-separated phoneme symbols (as ``decode`` returns).
        unk_token / pad_token: Special symbols (must be in the vocabulary).

    Example:

    ```python
    >>> from ella_v_hf.processing import EllaVPhonemeTokenizer
    >>> tok = EllaVPhonemeTokenizer()
    >>> tok.tokenize("Hello, world!")
    ['|', 'h', 'ə', 'l', 'oʊ', ',', 'w', 'ɜː', 'l', 'd', '!']
    ```
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str | None = None,
        language: str = "en-us",
        normalize: bool = True,
        do_phonemize: bool = True,
        unk_token: str = "<unk>",
        pad_token: str = "<pad>",
        **kwargs,
    ) -> None:
        path = Path(vocab_file) if vocab_file is not None else DEFAULT_VOCAB_FILE
        with open(path, encoding="utf-8") as handle:
            self.encoder: dict[str, int] = json.load(handle)
        missing = [t for t in (str(unk_token), str(pad_token), *SEPARATOR_TOKENS) if t not in self.encoder]
        if missing:
            raise ValueError(f"Vocabulary {path} lacks the required symbols {missing}")
        if sorted(self.encoder.values()) != list(range(len(self.encoder))):
            raise ValueError(f"Vocabulary {path} ids must be exactly 0..{len(self.encoder) - 1}")
        self.decoder = {i: s for s, i in self.encoder.items()}
        self.language = language
        self.normalize = normalize
        self.do_phonemize = do_phonemize
        self._warned: set[str] = set()
        kwargs.setdefault("special_tokens_pattern", "none")
        super().__init__(
            unk_token=unk_token,
            pad_token=pad_token,
            language=language,
            normalize=normalize,
            do_phonemize=do_phonemize,
            **kwargs,
        )
        _espeak_backend(language) if do_phonemize else None  # fail fast on an unsupported language

    # -- vocabulary ------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.encoder)

    def vocab_fingerprint(self) -> str:
        """A short hash of the symbol -> id table: models record it, so a vocabulary of the same size
        in another order is caught (``EllaVTTSConfig.phoneme_vocab_sha256``)."""
        import hashlib

        return hashlib.sha256(json.dumps(self.encoder, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]

    @property
    def separator_token_ids(self) -> list[int]:
        """Ids of the tokens that may own pause frames (or none): ``| , . ? !``."""
        return [self.encoder[t] for t in SEPARATOR_TOKENS]

    @property
    def word_boundary_token_id(self) -> int:
        return self.encoder[WORD_BOUNDARY]

    def _convert_token_to_id(self, token: str) -> int:
        if token not in self.encoder:
            if token not in self._warned:
                self._warned.add(token)
                logger.warning(f"Phoneme {token!r} is not in the vocabulary; it becomes {self.unk_token}.")
            return self.encoder[self.unk_token]
        return self.encoder[token]

    def _convert_id_to_token(self, index: int) -> str:
        return self.decoder.get(int(index), self.unk_token)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        name = (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILES_NAMES["vocab_file"]
        path = Path(save_directory) / name
        path.write_text(json.dumps(self.encoder, ensure_ascii=False, indent=1), encoding="utf-8")
        return (str(path),)

    # -- tokenisation ----------------------------------------------------------------------
    def tokenize(self, text: str, do_phonemize: bool | None = None, **kwargs) -> list[str]:
        """Phoneme symbols of ``text``.

        Args:
            text: Raw text, or space-separated phoneme symbols when phonemisation is off.
            do_phonemize: Override the tokenizer's ``do_phonemize`` for this call only.
        """
        phonemize = self.do_phonemize if do_phonemize is None else do_phonemize
        if not phonemize:
            tokens = text.split()
            if not tokens:
                raise ValueError("Phoneme input is empty.")
            return tokens
        return self.text_to_phonemes(text)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return self.tokenize(text, **kwargs)

    def text_to_phonemes(self, text: str) -> list[str]:
        """Phoneme symbols of ``text`` (see the module docstring for the sequence)."""
        return self.batch_text_to_phonemes([text])[0]

    def batch_text_to_phonemes(self, texts: Sequence[str]) -> list[list[str]]:
        """Phonemise many texts in one espeak call (much faster than one call per text)."""
        return [words_to_tokens(words) for words in phonemize_words(texts, self.language, self.normalize)]

    def batch_encode_phonemes(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids for many texts at once (for ``datasets.map``)."""
        return [self.convert_tokens_to_ids(tokens) for tokens in self.batch_text_to_phonemes(texts)]

    @classmethod
    def build_vocab(cls, texts: Iterable[str], language: str = "en-us", save_path: str | os.PathLike | None = None) -> dict[str, int]:
        """Build a vocabulary from the phonemes of ``texts`` (specials and separators first).

        Args:
            texts: Corpus sentences in ``language``.
            language: espeak language code.
            save_path: Where to write the JSON vocabulary (optional).
        """
        symbols: set[str] = set()
        texts = list(texts)
        for start in range(0, len(texts), 256):
            for words in phonemize_words(texts[start : start + 256], language):
                for phones, _ in words:
                    symbols.update(phones)
        vocab = {s: i for i, s in enumerate(["<pad>", "<unk>", *SEPARATOR_TOKENS, *sorted(symbols)])}
        if save_path is not None:
            Path(save_path).write_text(json.dumps(vocab, ensure_ascii=False, indent=1), encoding="utf-8")
        return vocab


EllaVPhonemeTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = ["EllaVPhonemeTokenizer", "SEPARATOR_TOKENS", "WORD_BOUNDARY", "phonemize_words", "token_words", "words_to_tokens"]
