"""Text normalisation before phonemisation: what espeak mishandles (numbers with separators,
ordinals, currency, abbreviations, symbols) is spelled out, and unsupported characters are
reported instead of being dropped silently."""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

#: Punctuation the phoneme tokenizer understands (turned into pause tokens or dropped).
PUNCTUATION = set(";:,.!?¡¿—–-…\"'«»“”‘’(){}[]")

_ABBREVIATIONS_EN = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miss",
    "dr": "doctor",
    "prof": "professor",
    "st": "saint",
    "jr": "junior",
    "sr": "senior",
    "vs": "versus",
    "etc": "et cetera",
    "no": "number",
    "co": "company",
    "ltd": "limited",
    "gen": "general",
    "capt": "captain",
    "lt": "lieutenant",
    "sgt": "sergeant",
    "mt": "mount",
    "ft": "fort",
}
_SYMBOLS_EN = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals ", "#": " number ", "/": " slash "}
_CURRENCY_EN = {"$": ("USD", "dollar", "dollars"), "£": ("GBP", "pound", "pounds"), "€": ("EUR", "euro", "euros")}


def _number_words(number: str, language: str, to: str = "cardinal") -> str:
    lang = language.split("-")[0]
    try:
        return num2words(number, lang=lang, to=to)
    except (NotImplementedError, OverflowError, ValueError):
        return number  # left to espeak, which reads digits in most languages


def _expand_english(text: str) -> str:
    for symbol, names in _CURRENCY_EN.items():
        pattern = re.escape(symbol) + r"\s?(\d[\d,]*(?:\.\d\d)?)"

        def spell(match: re.Match, names: tuple[str, str, str] = names) -> str:
            code, one, many = names
            amount = float(match.group(1).replace(",", ""))
            if amount != int(amount):
                words = num2words(amount, lang="en", to="currency", currency=code).replace(",", "")
            else:
                words = f"{num2words(int(amount), lang='en')} {one if amount == 1 else many}"
            return f" {words} "

        text = re.sub(pattern, spell, text)
    text = re.sub(
        r"\b(" + "|".join(_ABBREVIATIONS_EN) + r")\.(?=\s|$)",
        lambda m: _ABBREVIATIONS_EN[m.group(1).lower()],
        text,
        flags=re.IGNORECASE,
    )
    text = re.sub(r"\b(e)\.g\.", "for example", text, flags=re.IGNORECASE)
    text = re.sub(r"\b(i)\.e\.", "that is", text, flags=re.IGNORECASE)
    text = re.sub(r"\b([ap])\.m\.", lambda m: f"{m.group(1)} m", text, flags=re.IGNORECASE)
    for symbol, words in _SYMBOLS_EN.items():
        text = text.replace(symbol, words)
    return text


def normalize_text(text: str, language: str = "en-us") -> str:
    """Spell out numbers, ordinals, currency and (for English) abbreviations and symbols.

    Args:
        text: Raw input text.
        language: espeak language code (``en-us``, ``en-gb``, ``fr-fr``, …).

    Returns:
        Normalised text (whitespace collapsed).

    Raises:
        ValueError: If the text is empty, or contains characters that cannot be read aloud
            (emoji, control characters, unknown symbols); the message names them.
    """
    if not isinstance(text, str):
        raise ValueError(f"Expected text as str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text)
    if not text.strip():
        raise ValueError("Text is empty or whitespace only; nothing to synthesise.")
    english = language.startswith("en")
    if english:
        text = _expand_english(text)
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)  # 1,000 -> 1000
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: _number_words(m.group(1), language, "ordinal"), text)
    if english:
        text = re.sub(
            r"\b(1[1-9]\d\d|20\d\d)\b(?!\.\d)", lambda m: _number_words(m.group(1), language, "year"), text
        )
    text = re.sub(r"\d+(?:\.\d+)?", lambda m: " " + _number_words(m.group(0), language) + " ", text)
    bad = sorted(
        {
            ch
            for ch in text
            if not (ch.isalpha() or ch.isspace() or ch in PUNCTUATION or unicodedata.category(ch).startswith("M"))
        }
    )
    if bad:
        listed = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in bad)
        raise ValueError(f"Text contains characters that cannot be read aloud: {listed}")
    return re.sub(r"\s+", " ", text).strip()
