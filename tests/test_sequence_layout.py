"""The interleave rule: hand-written expected sequences, the inverse parse, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ella_v_hf import (
    IGNORE_INDEX,
    LayoutError,
    LayoutSpec,
    TokenSpace,
    build_gar_sequence,
    parse_gar_sequence,
    sequence_to_alignment_durations,
)
from ella_v_hf.modeling import frame_phoneme_ids, frame_phonemes

SPACE = TokenSpace(num_phonemes=10, codebook_size=16)  # phoneme p -> 4 + p, code c -> 14 + c


def ids(text: str) -> list[int]:
    """Hand-written sequences: 'P3' phoneme 3, 'a5' code 5, and the specials by name."""
    specials = {"PAD": 0, "BOS": 1, "EOP": 2, "EOS": 3}
    out = []
    for word in text.split():
        if word in specials:
            out.append(specials[word])
        elif word[0] == "P":
            out.append(4 + int(word[1:]))
        elif word[0] == "a":
            out.append(14 + int(word[1:]))
        else:
            raise AssertionError(word)
    return out


PHONEMES = [0, 1, 2]
DURATIONS = [2, 3, 1]
CODES = [10, 11, 12, 13, 14, 15]


def build(spec: LayoutSpec, phonemes=PHONEMES, durations=DURATIONS, codes=CODES):
    return build_gar_sequence(phonemes, durations, codes, SPACE, spec)


def test_token_space_ids():
    assert (SPACE.phoneme_offset, SPACE.acoustic_offset, SPACE.vocab_size) == (4, 14, 30)
    assert SPACE.phoneme_id(9) == 13 and SPACE.acoustic_id(0) == 14
    with pytest.raises(ValueError, match="phoneme index 10"):
        SPACE.phoneme_id(10)
    with pytest.raises(ValueError, match="acoustic code 16"):
        SPACE.acoustic_id(16)


def test_ella_v_without_local_advance():
    seq = build(LayoutSpec("ella-v", local_advance=0))
    assert seq.input_ids == ids("P0 P1 P2 BOS P0 a10 a11 EOP P1 a12 a13 a14 EOP P2 a15 EOP EOS")
    assert seq.prefix_length == 3 and seq.complete


def test_labels_only_on_acoustic_eop_eos():
    seq = build(LayoutSpec("ella-v", local_advance=0))
    expected = [t if (t >= 14 or t in (2, 3)) else IGNORE_INDEX for t in seq.input_ids]
    assert seq.labels == expected
    assert seq.labels[:5] == [IGNORE_INDEX] * 5  # prefix, BOS and the first inline phoneme


def test_ella_v_local_advance_one_frame():
    # Boundaries at frames 2 and 5 move to 1 and 4: the last frame of each phoneme follows the next phoneme.
    seq = build(LayoutSpec("ella-v", local_advance=1))
    assert seq.input_ids == ids("P0 P1 P2 BOS P0 a10 EOP P1 a11 a12 a13 EOP P2 a14 a15 EOP EOS")


def test_ella_v_local_advance_larger_than_a_phoneme_clamps():
    # k=3 > 2 frames of P0: the first transition clamps to time 0, P0 owns no frame in the sequence.
    seq = build(LayoutSpec("ella-v", local_advance=3))
    assert seq.input_ids == ids("P0 P1 P2 BOS P0 EOP P1 a10 a11 EOP P2 a12 a13 a14 a15 EOP EOS")
    # Transitions never overtake each other: all three boundaries clamp to time 0.
    seq = build(LayoutSpec("ella-v", local_advance=3), [0, 1, 2, 3], [1, 1, 1, 3], [1, 2, 3, 4, 5, 6])
    assert seq.input_ids == ids("P0 P1 P2 P3 BOS P0 EOP P1 EOP P2 EOP P3 a1 a2 a3 a4 a5 a6 EOP EOS")


def test_ella_v_zero_frame_phonemes():
    seq = build(LayoutSpec("ella-v", local_advance=0), [0, 9, 2], [2, 0, 1], [1, 2, 3])
    assert seq.input_ids == ids("P0 P9 P2 BOS P0 a1 a2 EOP P9 EOP P2 a3 EOP EOS")
    seq = build(LayoutSpec("ella-v", local_advance=0), [9, 0], [0, 2], [1, 2])  # leading pause token, no pause
    assert seq.input_ids == ids("P9 P0 BOS P9 EOP P0 a1 a2 EOP EOS")


def test_ella_v_without_global_advance():
    seq = build(LayoutSpec("ella-v", global_advance=False, local_advance=0))
    assert seq.input_ids == ids("BOS P0 a10 a11 EOP P1 a12 a13 a14 EOP P2 a15 EOP EOS")
    assert seq.prefix_length == 0


def test_vall_e_layout():
    seq = build(LayoutSpec("vall-e"))
    assert seq.input_ids == ids("P0 P1 P2 BOS a10 a11 a12 a13 a14 a15 EOS")
    assert seq.labels == [IGNORE_INDEX] * 4 + seq.input_ids[4:]


def test_prompt_ends_inside_the_first_target_phoneme():
    # Prompt aligned on P0 P1 (5 frames); P2 P3 are the target text.
    seq = build(LayoutSpec("ella-v", local_advance=1), [0, 1, 2, 3], [2, 3], [10, 11, 12, 13, 14])
    assert seq.input_ids == ids("P0 P1 P2 P3 BOS P0 a10 EOP P1 a11 a12 a13 EOP P2 a14")
    assert not seq.complete
    parsed = parse_gar_sequence(seq.input_ids, SPACE, LayoutSpec("ella-v", local_advance=1))
    assert parsed.phonemes == [0, 1, 2] and parsed.frame_counts == [1, 3, 1] and parsed.closed_phonemes == 2
    assert not parsed.complete
    # No prompt audio at all: generation starts right after the first phoneme.
    seq = build_gar_sequence([4, 5], None, None, SPACE, LayoutSpec("ella-v"))
    assert seq.input_ids == ids("P4 P5 BOS P4")
    seq = build(LayoutSpec("vall-e"), [0, 1, 2], [2], [7, 8])
    assert seq.input_ids == ids("P0 P1 P2 BOS a7 a8")


def test_parse_inverts_build():
    spec = LayoutSpec("ella-v", local_advance=1)
    parsed = parse_gar_sequence(build(spec).input_ids, SPACE, spec)
    assert parsed.prefix_phonemes == PHONEMES and parsed.phonemes == PHONEMES
    assert parsed.frame_counts == [1, 3, 2] and parsed.codes == CODES and parsed.complete
    assert sequence_to_alignment_durations(parsed.frame_counts, 1) == DURATIONS


def test_parse_ignores_padding():
    spec = LayoutSpec("ella-v", local_advance=0)
    seq = build(spec).input_ids
    parsed = parse_gar_sequence([0, 0] + seq + [0, 0, 0], SPACE, spec)
    assert parsed.codes == CODES and parsed.frame_counts == DURATIONS and parsed.complete


@pytest.mark.parametrize(
    "text, message",
    [
        ("P0 P1 BOS a3 EOP", "acoustic token outside a phoneme"),
        ("P0 P1 BOS P0 a3 P1", "before the previous phoneme's EOP"),
        ("P0 P1 BOS P1 a3 EOP", "does not follow the prefix"),
        ("P0 P1 BOS P0 a3 EOP EOS", "EOS before the last phoneme's EOP"),
        ("P0 P1 BOS P0 a3 EOS", "EOS before the last phoneme's EOP"),
        ("P0 a1 BOS P0", "only phonemes may precede BOS"),
        ("BOS P0 a1 EOP EOS", "no phoneme prefix"),
        ("P0 P1 BOS P0 EOP EOP", "EOP without an open phoneme"),
    ],
)
def test_parse_rejects_impossible_sequences(text, message):
    with pytest.raises(LayoutError, match=message):
        parse_gar_sequence(ids(text), SPACE, LayoutSpec("ella-v"))


def test_parse_vall_e_rejects_phonemes_after_bos():
    with pytest.raises(LayoutError, match="vall-e"):
        parse_gar_sequence(ids("P0 BOS a1 P0 a2 EOS"), SPACE, LayoutSpec("vall-e"))
    parsed = parse_gar_sequence(ids("P0 BOS a1 P0 a2 EOS"), SPACE, LayoutSpec("vall-e"), strict=False)
    assert parsed.codes == [1, 2] and parsed.complete


@pytest.mark.parametrize(
    "args, message",
    [
        (([], [], []), "without phonemes"),
        (([0, 1], [1, 1, 1], [1, 2, 3]), "3 durations for 2 phonemes"),
        (([0, 1], [2, -1], [1]), "Durations must be >= 0"),
        (([0, 1], [1, 1], [1, 2, 3]), "sum to 2 frames but there are 3 codes"),
        (([10], [1], [1]), "phoneme index 10"),
        (([1], [1], [16]), "acoustic code 16"),
    ],
)
def test_build_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        build_gar_sequence(*args, SPACE, LayoutSpec("ella-v"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layout="valle"), "Unknown layout"),
        (dict(layout="vall-e", global_advance=False), "needs global_advance=True"),
        (dict(layout="vall-e", local_advance=2), "no phoneme tokens to advance"),
        (dict(local_advance=-1), "local_advance must be >= 0"),
    ],
)
def test_layout_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LayoutSpec(**kwargs)


utterances = st.integers(1, 8).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 9), min_size=n, max_size=n),
        st.lists(st.integers(0, 6), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(utterances, st.integers(0, 4), st.booleans(), st.booleans(), st.sampled_from(["ella-v", "vall-e"]), st.randoms())
def test_round_trip_build_parse(utterance, advance, global_advance, inline, layout, rnd):
    phonemes, durations = utterance
    if layout == "vall-e":
        advance, global_advance, inline = 0, True, True
    if not inline:
        global_advance = True
    spec = LayoutSpec(layout, global_advance=global_advance, local_advance=advance, inline_phonemes=inline)
    codes = [rnd.randrange(16) for _ in range(sum(durations))]
    seq = build_gar_sequence(phonemes, durations, codes, SPACE, spec)
    parsed = parse_gar_sequence(seq.input_ids, SPACE, spec)
    assert parsed.complete and parsed.codes == codes
    assert parsed.prefix_phonemes == (phonemes if global_advance else [])
    assert seq.input_ids.count(SPACE.EOS) == 1 and seq.input_ids[-1] == SPACE.EOS
    if layout == "ella-v":
        assert parsed.phonemes == phonemes and parsed.closed_phonemes == len(phonemes)
        assert sum(parsed.frame_counts) == sum(durations)
        assert seq.input_ids.count(SPACE.EOP) == len(phonemes)
        after_bos = seq.input_ids[seq.prefix_length + 1 :]
        assert sum(SPACE.is_phoneme(t) for t in after_bos) == (len(phonemes) if inline else 0)
        if advance == 0:
            assert parsed.frame_counts == durations
        # Unclamped transitions invert exactly; clamped ones keep the total length.
        recovered = sequence_to_alignment_durations(parsed.frame_counts, advance)
        assert sum(recovered) == sum(durations) and min(recovered) >= 0
        starts = [sum(durations[: i + 1]) for i in range(len(durations) - 1)]
        unclamped = all(b - advance >= max(a - advance, 0) for a, b in zip([advance] + starts, starts))
        if unclamped:
            assert recovered == durations
    # Every prefix of a valid sequence parses (generation checks partial sequences).
    cut = rnd.randrange(len(seq.input_ids) + 1)
    parse_gar_sequence(seq.input_ids[:cut], SPACE, spec)


def test_frame_phoneme_ids_expand_durations():
    from ella_v_hf.modeling import frame_phoneme_ids

    space = TokenSpace(num_phonemes=10, codebook_size=8)
    assert frame_phoneme_ids([1, 3, 2], [2, 0, 3], space, 5) == [space.phoneme_id(p) for p in (1, 1, 2, 2, 2)]
    with pytest.raises(LayoutError, match="cover 5 frames, expected 6"):
        frame_phoneme_ids([1, 3, 2], [2, 0, 3], space, 6)
    with pytest.raises(LayoutError, match="non-negative"):
        frame_phoneme_ids([1, 3], [2, -1], space)


def test_no_in_sequence_phonemes_layout():
    """The paper's "without in-sequence phonemes" ablation: prefix, BOS, frames closed by EOPs."""
    spec = LayoutSpec(inline_phonemes=False, local_advance=0)
    seq = build_gar_sequence([1, 2], [2, 1], [5, 6, 7], SPACE, spec)
    p, a = SPACE.phoneme_id, SPACE.acoustic_id
    assert seq.input_ids == [p(1), p(2), SPACE.BOS, a(5), a(6), SPACE.EOP, a(7), SPACE.EOP, SPACE.EOS]
    assert [t for t in seq.labels if t != -100] == seq.input_ids[3:]  # loss on frames, EOP, EOS only
    parsed = parse_gar_sequence(seq.input_ids, SPACE, spec)
    assert parsed.phonemes == [1, 2] and parsed.frame_counts == [2, 1] and parsed.complete
    prompt = build_gar_sequence([1, 2, 3], [2], [5, 6], SPACE, spec)  # ends inside the first target phoneme
    assert prompt.input_ids[-1] == SPACE.EOP and parse_gar_sequence(prompt.input_ids, SPACE, spec).phonemes == [1, 2]
    with pytest.raises(LayoutError, match="no in-sequence phonemes"):
        parse_gar_sequence([p(1), SPACE.BOS, p(1), a(5), SPACE.EOP, SPACE.EOS], SPACE, spec)
    with pytest.raises(ValueError, match="needs global_advance=True"):
        LayoutSpec(inline_phonemes=False, global_advance=False)
    with pytest.raises(ValueError, match="ablation of the ella-v layout"):
        LayoutSpec("vall-e", inline_phonemes=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=2, max_size=8), st.integers(1, 4))
def test_undoing_the_local_advance_moves_every_frame_by_the_advance(counts, advance):
    """Frame t belongs to the phoneme owning sequence position t - advance, even when a generated
    last phoneme owns fewer than ``advance`` frames (it used to shift every frame by that count)."""
    from ella_v_hf.modeling import frame_phoneme_ids

    durations = sequence_to_alignment_durations(counts, advance)
    assert sum(durations) == sum(counts) and min(durations) >= 0
    owner = [i for i, c in enumerate(counts) for _ in range(c)]  # sequence position -> phoneme
    expected = [owner[max(t - advance, 0)] if t >= advance else 0 for t in range(len(owner))]
    got = frame_phoneme_ids(list(range(len(counts))), durations, SPACE)
    assert [SPACE.phoneme_id(e) for e in expected] == got


def test_undoing_the_local_advance_with_a_short_last_phoneme():
    assert sequence_to_alignment_durations([5, 4, 4, 1], 2) == [7, 4, 3, 0]
    assert sequence_to_alignment_durations([5, 4, 4, 3], 2) == [7, 4, 4, 1]


def test_frame_phonemes_expand_durations_and_check_them():
    assert frame_phonemes([3, 1, 4], [2, 0, 3]) == [3, 3, 4, 4, 4]
    assert frame_phoneme_ids([3, 1, 4], [2, 0, 3], SPACE, 5) == [SPACE.phoneme_id(p) for p in (3, 3, 4, 4, 4)]
    with pytest.raises(LayoutError, match="expected 6"):
        frame_phonemes([3, 1], [2, 3], num_frames=6)
    with pytest.raises(LayoutError, match="non-negative"):
        frame_phonemes([3, 1], [2, -1])
    with pytest.raises(LayoutError, match="non-negative"):
        frame_phonemes([3, 1], [2])
