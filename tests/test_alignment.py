"""Alignment: Viterbi with optional separators, the trained built-in aligner, TextGrid import."""

from __future__ import annotations

import numpy as np
import pytest
from praatio import textgrid
from praatio.utilities.constants import Interval

from ella_v_hf.modeling import AlignmentError, EllaVAlignerModel, viterbi_align
from ella_v_hf.processing import EllaVPhonemeTokenizer, load_audio, prepare_waveform, read_corpus
from ella_v_hf.processing.aligners.textgrid import TextGridMismatch, textgrid_durations


def symbols(text: str) -> list[str]:
    tok = EllaVPhonemeTokenizer()
    return tok.convert_ids_to_tokens(tok(text)["input_ids"])


def one_hot_emissions(labels: list[int], classes: int = 4) -> np.ndarray:
    emissions = np.full((len(labels), classes), -10.0)
    emissions[np.arange(len(labels)), labels] = 0.0
    return emissions


def test_viterbi_recovers_a_clean_segmentation():
    # Class 0 = pause, 1..3 phonemes. Tokens: | a , b |  (separators optional)
    frames = [0, 0, 1, 1, 1, 2, 2, 0, 0]
    result = viterbi_align(one_hot_emissions(frames), [0, 1, 0, 2, 0], [True, False, True, False, True])
    assert result.durations == [2, 3, 0, 2, 2]
    assert result.score == pytest.approx(0.0)


def test_viterbi_gives_every_phoneme_a_frame_and_covers_all_frames():
    rng = np.random.default_rng(0)
    emissions = rng.standard_normal((30, 5))
    classes = [0, 1, 2, 0, 3, 4, 0, 0, 2, 0]
    optional = [c == 0 for c in classes]
    result = viterbi_align(emissions, classes, optional)
    assert sum(result.durations) == 30
    assert all(d >= 1 for d, opt in zip(result.durations, optional) if not opt)


def test_viterbi_too_few_frames():
    with pytest.raises(AlignmentError, match="too few"):
        viterbi_align(np.zeros((2, 4)), [1, 2, 3], [False, False, False])


def test_trained_aligner_on_flite_corpus(flite_corpus, small_aligner, tmp_path):
    tok = EllaVPhonemeTokenizer()
    utterances, _ = read_corpus(flite_corpus)
    scores = []
    for utterance in utterances[:6]:
        waveform = prepare_waveform(*load_audio(utterance.audio_path), 16000)
        ids = tok(utterance.text)["input_ids"]
        alignment = small_aligner.align(waveform, ids)
        frames = small_aligner.frontend(__import__("torch").from_numpy(waveform)[None]).shape[1]
        assert sum(alignment.durations) == frames == int(np.ceil(len(waveform) / 320))
        assert len(alignment.durations) == len(ids)
        assert all(d >= 1 for d, i in zip(alignment.durations, ids) if i not in tok.separator_token_ids)
        scores.append(alignment.score)
    # A transcript that does not match the audio is refused, not silently mis-aligned. (A tiny
    # aligner trained in seconds only catches gross mismatches; the corpus-size one separates
    # swapped transcripts too, see the processing notes.)
    waveform = prepare_waveform(*load_audio(utterances[0].audio_path), 16000)
    wrong = tok(" ".join(u.text for u in utterances[1:5]))["input_ids"]
    with pytest.raises(AlignmentError, match="does not match the audio"):
        small_aligner.align(waveform, wrong)
    small_aligner.save_pretrained(tmp_path)
    loaded = EllaVAlignerModel.from_pretrained(tmp_path)
    assert loaded.config.mismatch_threshold == small_aligner.config.mismatch_threshold
    assert loaded.eval().align(waveform, tok(utterances[0].text)["input_ids"]).durations == small_aligner.align(
        waveform, tok(utterances[0].text)["input_ids"]
    ).durations


def write_textgrid(path, words, phones, end):
    grid = textgrid.Textgrid()
    grid.addTier(textgrid.IntervalTier("words", [Interval(*w) for w in words], 0, end))
    grid.addTier(textgrid.IntervalTier("phones", [Interval(*p) for p in phones], 0, end))
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)


def test_textgrid_import(tmp_path):
    path = tmp_path / "hw.TextGrid"
    phones = [(0.1, 0.2, "HH"), (0.2, 0.3, "AH0"), (0.3, 0.4, "L"), (0.4, 0.5, "OW1")]
    phones += [(0.7, 0.8, "W"), (0.8, 0.9, "ER1"), (0.9, 1.0, "L"), (1.0, 1.1, "D")]
    write_textgrid(path, [(0.1, 0.5, "hello"), (0.7, 1.1, "world")], phones, 1.2)
    tokens = symbols("Hello, world!")
    durations = textgrid_durations(path, tokens, num_frames=60, frame_rate=50.0)
    assert tokens == ["|", "h", "ə", "l", "oʊ", ",", "w", "ɜː", "l", "d", "!"]
    # 0.1 s leading silence, 0.1 s per phone, the 0.2 s pause on the comma, 0.1 s after the last word
    assert durations == [5, 5, 5, 5, 5, 10, 5, 5, 5, 5, 5]
    # Fewer MFA phones than espeak phonemes: the word span is shared out, every phoneme gets a frame.
    write_textgrid(path, [(0.0, 0.1, "hello"), (0.1, 0.4, "world")], [(0.0, 0.1, "HH")], 0.4)
    tokens = symbols("Hello world")
    durations = textgrid_durations(path, tokens, num_frames=20, frame_rate=50.0)
    assert sum(durations) == 20 and all(d >= 1 for t, d in zip(tokens, durations) if t not in "|,.?!")


def test_textgrid_mismatch(tmp_path):
    path = tmp_path / "x.TextGrid"
    write_textgrid(path, [(0.1, 0.5, "hello")], [(0.1, 0.5, "HH")], 0.6)
    with pytest.raises(TextGridMismatch, match="1 words do not match the transcript's 2 words"):
        textgrid_durations(path, symbols("Hello, world!"), num_frames=30, frame_rate=50.0)
    (tmp_path / "bad.TextGrid").write_text("not a textgrid")
    with pytest.raises(TextGridMismatch, match="Cannot read TextGrid"):
        textgrid_durations(tmp_path / "bad.TextGrid", symbols("Hello"), num_frames=30, frame_rate=50.0)


def test_textgrid_maps_words_espeak_joins(tmp_path):
    """MFA keeps "on" and "the" apart; espeak makes them one word (as for "of a", "from the" …)."""
    path = tmp_path / "sit.TextGrid"
    labels = [("sit", ["S", "IH1", "T"]), ("on", ["AA1", "N"]), ("the", ["DH", "AH0"]), ("mat", ["M", "AE1", "T"])]
    words, phones, t = [], [], 0.2
    for word, arpabet in labels:
        words.append((t, t + 0.1 * len(arpabet), word))
        phones += [(t + 0.1 * k, t + 0.1 * (k + 1), p) for k, p in enumerate(arpabet)]
        t += 0.1 * len(arpabet)
    write_textgrid(path, words, phones, t + 0.2)
    tokens = symbols("Sit on the mat.")
    assert tokens == ["|", "s", "ɪ", "t", "|", "ɔ", "n", "ð", "ə", "|", "m", "æ", "t", "."]
    durations = textgrid_durations(path, tokens, num_frames=round((t + 0.2) * 50), frame_rate=50.0)
    # 0.2 s of leading silence, then every phone 0.1 s = 5 frames; the joined word spans both MFA words.
    assert durations == [10, 5, 5, 5, 0, 5, 5, 5, 5, 0, 5, 5, 5, 10]


def test_textgrid_word_mapping_groups_and_refuses():
    from ella_v_hf.processing.aligners.textgrid import map_words

    assert map_words([3, 2, 2, 3], [3, 4, 3]) == [(0, 1, 0, 1), (1, 3, 1, 2), (3, 4, 2, 3)]
    assert map_words([3, 6, 3], [3, 2, 4, 3]) == [(0, 1, 0, 1), (1, 2, 1, 3), (2, 3, 3, 4)]  # espeak split one
    with pytest.raises(TextGridMismatch, match="do not match"):
        map_words([3, 9], [3, 1, 1, 1, 1])


def test_textgrid_longer_than_its_audio_is_refused(tmp_path):
    path = tmp_path / "long.TextGrid"
    write_textgrid(path, [(0.1, 0.5, "hello"), (0.7, 1.1, "world")], [(0.1, 0.5, "HH"), (0.7, 1.1, "W")], 3.0)
    with pytest.raises(TextGridMismatch, match="covers 3.00 s but the audio lasts 1.20 s"):
        textgrid_durations(path, symbols("Hello world"), num_frames=60, frame_rate=50.0)
