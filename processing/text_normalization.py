"""Text normalisation before phonemisation: what espeak mishandles (numbers with separators,
ordinals, currency, dates, decades, phone numbers, abbreviations, symbols) is spelled out, and
unsupported characters are reported instead of being dropped silently. Number words come from
num2words; month names from the standard library.

Letters of another script than the voice's (Cyrillic, Greek, CJK … for an English voice) are read
by espeak as letter names: a ``UserWarning`` names the script and suggests another language.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
import warnings

from num2words import num2words

#: Punctuation the phoneme tokenizer understands (turned into pause tokens or dropped).
PUNCTUATION = set(";:,.!?¡¿—–-…\"'«»“”‘’(){}[]")

_ABBREVIATIONS_EN = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miss",
    "dr": "doctor",
    "prof": "professor",
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


def _date(match: re.Match, day_first: bool) -> str:
    """``12/05/2024`` -> ``December fifth, twenty twenty-four`` (month first unless ``day_first``
    or the first number cannot be a month)."""
    first, second, year = int(match.group(1)), int(match.group(2)), match.group(3)
    month, day = (second, first) if day_first or first > 12 else (first, second)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return match.group(0)
    year_number = int(year) if len(year) == 4 else 2000 + int(year)
    return f"{calendar.month_name[month]} {num2words(day, lang='en', to='ordinal')}, {num2words(year_number, lang='en', to='year')}"


def _decade(match: re.Match) -> str:
    """``1990s`` -> ``nineteen nineties``; ``'80s`` -> ``eighties``."""
    digits = match.group(1) or match.group(2)
    words = num2words(int(digits), lang="en", to="year" if len(digits) == 4 else "cardinal")
    return (words[:-1] + "ies" if words.endswith("y") else words + "s").replace(",", "")


_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _phone_number(match: re.Match) -> str:
    """``(555) 123-4567`` -> ``five five five, one two three, four five six seven``."""
    groups = [g for g in re.split(r"\D+", match.group(0)) if g]
    return ", ".join(" ".join(_DIGITS[int(d)] for d in group) for group in groups)


_LETTERS_EN = dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", (
    "eh", "bee", "see", "dee", "ee", "eff", "jee", "aitch", "eye", "jay", "kay", "ell", "em", "en", "oh", "pee", "cue",
    "ar", "ess", "tee", "you", "vee", "double you", "ex", "why", "zee",
)))
#: Units read after a number (``50°C`` -> ``fifty degrees Celsius``; ``5 km`` -> ``five kilometres``).
_UNITS_EN = {
    "°C": "degrees Celsius", "°F": "degrees Fahrenheit", "°": "degrees", "km/h": "kilometres per hour", "mph": "miles per hour",
    "km": "kilometres", "cm": "centimetres", "mm": "millimetres", "kg": "kilograms", "mg": "milligrams", "ml": "millilitres",
    "kHz": "kilohertz", "Hz": "hertz", "GB": "gigabytes", "MB": "megabytes", "kB": "kilobytes", "ms": "milliseconds",
}
_TOP_LEVEL_DOMAINS = "com|org|net|edu|gov|io|ai|co|uk|us|de|fr|info|dev|app|biz"


def _spell_letters(letters: str) -> str:
    """``"USA"`` -> ``"you ess eh"``: the letters' names, as an acronym is read."""
    return " ".join(_LETTERS_EN[ch] for ch in letters.upper() if ch in _LETTERS_EN)


def _spoken_address(address: str) -> str:
    """``"https://www.example.com/a-b"`` -> ``"w w w dot example dot com slash a dash b"``;
    ``"user@host.org"`` -> ``"user at host dot org"``: addresses as people say them."""
    address = re.sub(r"^[a-z]+://", "", address, flags=re.IGNORECASE).rstrip("/")
    spoken = {".": " dot ", "/": " slash ", "@": " at ", "-": " dash ", "_": " underscore ", ":": " colon "}
    words = re.sub(r"[./@_:-]", lambda m: spoken[m.group(0)], address)
    return " " + re.sub(r"\bwww\b", "w w w", words, flags=re.IGNORECASE) + " "


def _fraction_words(value: float, whole: str = "") -> str:
    """``0.5`` -> ``one half``; with ``whole`` ``"3"``: ``three and a half``."""
    from fractions import Fraction

    fraction = Fraction(value).limit_denominator(100)
    numerator, denominator = fraction.numerator, fraction.denominator
    names = {2: ("half", "halves"), 4: ("quarter", "quarters")}
    one, many = names.get(denominator, (num2words(denominator, lang="en", to="ordinal"),) * 2)
    if denominator not in names and numerator > 1:
        many = one + "s"
    if whole:
        article = "an" if one[0] in "aeiou" else "a"
        part = f"{article} {one}" if numerator == 1 else f"{num2words(numerator, lang='en')} {many}"
        return f" {num2words(int(whole), lang='en')} and {part} "
    return f" {num2words(numerator, lang='en')} {one if numerator == 1 else many} "


def _expand_english_forms(text: str) -> str:
    """What must be read before NFKC and the generic rules: fractions, e-mail and web addresses,
    version numbers, units and acronyms."""
    # Vulgar fractions (NFKC would turn "½" into "1⁄2", with a fraction slash nobody typed).
    text = re.sub(r"(\d*)\s?([\u00bc-\u00be\u2150-\u215e])",
                  lambda m: _fraction_words(unicodedata.numeric(m.group(2)), m.group(1)), text)
    text = re.sub(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", lambda m: _spoken_address(m.group(0)), text)
    text = re.sub(rf"\b(?:[a-z]+://)?(?:www\.)?(?:[\w-]+\.)+(?:{_TOP_LEVEL_DOMAINS})\b(?:/[\w./-]*)?",
                  lambda m: _spoken_address(m.group(0)), text, flags=re.IGNORECASE)
    # Version numbers: "v2.0.1" / "2.0.1" -> "version two point zero point one".
    text = re.sub(r"\b(v(?:ersion)?\s?)?(\d+(?:\.\d+){2,}|(?<=v)\d+\.\d+)\b",
                  lambda m: (" version " if m.group(1) else " ") + " point ".join(num2words(int(p), lang="en") for p in m.group(2).split(".")) + " ",
                  text, flags=re.IGNORECASE)
    units = "|".join(re.escape(u) for u in sorted(_UNITS_EN, key=len, reverse=True))
    text = re.sub(rf"(\d)\s?({units})(?![\w°])", lambda m: f"{m.group(1)} {_UNITS_EN[m.group(2)]}", text)
    # Acronyms written with periods ("U.S.A.", "A.I."): their letters' names (a final one ends the sentence).
    text = re.sub(r"\b((?:[A-Za-z]\.){2,})(\s*$)?",
                  lambda m: _spell_letters(m.group(1)) + ("." if m.group(2) is not None else " "), text)
    return text


def _expand_english(text: str, language: str) -> str:
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
    # Dates, phone numbers and decades before "/" and "-" and the bare numbers are read.
    day_first = not language.startswith("en-us")
    text = re.sub(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b", lambda m: _date(m, day_first), text)
    text = re.sub(r"(?<![\w-])(?:\+1[ .-]?)?(?:\(\d{3}\)\s?|\b\d{3}[-. ])\d{3}[-. ]\d{4}\b", _phone_number, text)
    text = re.sub(r"\b(1\d\d0|20\d0)s\b|'(\d0)s\b", _decade, text)
    # "St.": a street after a capitalised name ("Main St."), else a saint ("St. John").
    text = re.sub(r"\b([A-Z][a-z]+ )St\.(?=\s|$)(\s*$)?", lambda m: m.group(1) + "street" + ("." if m.group(2) is not None else ""), text)
    text = re.sub(r"\bSt\.(?=\s|$)", "saint", text)
    text = re.sub(
        r"\b(" + "|".join(_ABBREVIATIONS_EN) + r")\.(?=\s|$)(\s*$)?",
        lambda m: _ABBREVIATIONS_EN[m.group(1).lower()] + ("." if m.group(2) is not None else ""),  # a final one ends the sentence
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
    if not text.strip():
        raise ValueError("Text is empty or whitespace only; nothing to synthesise.")
    english = language.startswith("en")
    if english:
        text = _expand_english_forms(text)
    text = unicodedata.normalize("NFKC", text)
    if english:
        text = _expand_english(text, language)
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
    _warn_foreign_script(text, language)
    return re.sub(r"\s+", " ", text).strip()


#: The script of each espeak language family this package's voices use (others are not checked).
LATIN_LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "nl", "pl", "cs", "sv", "da", "fi", "ro", "hu", "tr", "vi", "id")


def _script(ch: str) -> str:
    """Script of a letter from its Unicode name (``LATIN``, ``CYRILLIC``, ``GREEK``, ``CJK`` …)."""
    name = unicodedata.name(ch, "")
    return name.split(" ")[0] if name else "UNKNOWN"


def _warn_foreign_script(text: str, language: str) -> None:
    """Warn when a Latin-script voice is asked to read letters of another script."""
    if language.split("-")[0] not in LATIN_LANGUAGES:
        return
    scripts = sorted({_script(ch) for ch in text if ch.isalpha()} - {"LATIN"})
    if scripts:
        warnings.warn(
            f"The text contains {', '.join(s.title() for s in scripts)} letters, which the {language!r} voice reads as "
            "letter names or skips; phonemise it with its own language (EllaVPhonemeTokenizer(language=...)) "
            "and a model trained on that language.",
            UserWarning,
            stacklevel=3,
        )
