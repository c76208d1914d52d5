"""Phoneme tokenizer: phonemisation, separators, round trips, save/load, errors."""

from __future__ import annotations

import logging
import warnings

import pytest
from transformers import AutoTokenizer

from ella_v_hf.processing import EllaVPhonemeTokenizer, normalize_text


@pytest.fixture(scope="module")
def tok() -> EllaVPhonemeTokenizer:
    return EllaVPhonemeTokenizer()


def test_sequence_has_one_separator_per_word(tok):
    tokens = tok.tokenize("Hello, world!")
    assert tokens == ["|", "h", "ə", "l", "oʊ", ",", "w", "ɜː", "l", "d", "!"]
    tokens = tok.tokenize("The cat sat")
    assert tokens[0] == "|" and tokens[-1] == "|" and tokens.count("|") == 4  # leading + one per word


def test_ids_round_trip_through_decode(tok):
    ids = tok("Dr. Smith paid $5 on the 3rd -- yes?")["input_ids"]
    text = tok.decode(ids)
    assert "d ɑː k t ɚ" in text and text.endswith("?")
    assert tok(text, do_phonemize=False)["input_ids"] == ids
    assert tok.do_phonemize  # the per-call override does not stick


def test_batch_equals_single(tok):
    texts = ["One two three.", "A much longer sentence, with a comma!"]
    batch = tok(texts, padding=True)
    for i, text in enumerate(texts):
        single = tok(text)["input_ids"]
        assert batch["input_ids"][i][: len(single)] == single
        assert sum(batch["attention_mask"][i]) == len(single)
    assert tok.batch_encode_phonemes(texts) == [tok(t)["input_ids"] for t in texts]


def test_save_load_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    for loaded in (EllaVPhonemeTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert isinstance(loaded, EllaVPhonemeTokenizer)
        assert loaded.get_vocab() == tok.get_vocab() and loaded.language == "en-us"
        assert loaded("Hello, world!")["input_ids"] == tok("Hello, world!")["input_ids"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty or whitespace"),
        ("   \n\t", "empty or whitespace"),
        ("😀😀", r"cannot be read aloud: '😀' \(U\+1F600\)"),
        ("hello \x07 there", r"U\+0007"),
        ("... !!", "nothing pronounceable"),
    ],
)
def test_bad_text_raises_clear_errors(tok, text, message):
    with pytest.raises(ValueError, match=message):
        tok(text)


def test_unsupported_language():
    with pytest.raises(ValueError, match="not supported by espeak-ng"):
        EllaVPhonemeTokenizer(language="xx-yy")


def test_unknown_phonemes_become_unk_with_a_warning(caplog):
    fr = EllaVPhonemeTokenizer(language="fr-fr")  # English inventory, French phonemes
    with caplog.at_level(logging.WARNING):
        ids = fr("Bonjour le monde.")["input_ids"]
    assert fr.unk_token_id in ids
    assert any("not in the vocabulary" in r.getMessage() for r in caplog.records)


def test_normalisation():
    assert normalize_text("Dr. Smith paid $5.50 on the 3rd.") == "doctor Smith paid five dollars fifty cents on the third."
    assert normalize_text("It costs $1,000 & 20% more.") == "It costs one thousand dollars and twenty percent more."
    assert "nineteen ninety-nine" in normalize_text("In 1999.")


@pytest.mark.parametrize(
    "text, language, expected",
    [
        ("On 12/05/2024 we met.", "en-us", "On December fifth, twenty twenty-four we met."),
        ("On 12/05/2024 we met.", "en-gb", "On May twelfth, twenty twenty-four we met."),
        ("On 25/12/24 we met.", "en-us", "On December twenty-fifth, twenty twenty-four we met."),
        ("In the 1990s and the '80s.", "en-us", "In the nineteen nineties and the eighties."),
        ("Call 555-123-4567 now.", "en-us", "Call five five five, one two three, four five six seven now."),
        ("Call (555) 123-4567.", "en-us", "Call five five five, one two three, four five six seven."),
        ("I live on Main St.", "en-us", "I live on Main street."),
        ("St. John lives on Elm St. now.", "en-us", "saint John lives on Elm street now."),
        ("Send it to Dr.", "en-us", "Send it to doctor."),
    ],
)
def test_normalisation_of_dates_decades_phone_numbers_and_street(text, language, expected):
    assert normalize_text(text, language) == expected


def test_foreign_script_warns():
    with pytest.warns(UserWarning, match="Cyrillic letters"):
        normalize_text("Привет, world.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        normalize_text("Café au lait, naïve.")  # Latin letters with diacritics are fine


def test_build_vocab(tmp_path):
    vocab = EllaVPhonemeTokenizer.build_vocab(["Hello world.", "Good night!"], save_path=tmp_path / "v.json")
    assert list(vocab)[:7] == ["<pad>", "<unk>", "|", ",", ".", "?", "!"]
    tok = EllaVPhonemeTokenizer(vocab_file=str(tmp_path / "v.json"))
    assert tok.unk_token_id not in tok("Hello world.")["input_ids"]
