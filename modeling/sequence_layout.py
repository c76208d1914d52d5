"""The ELLA-V / VALL-E sequence layout: the one place where the interleave rule lives.

Training batches, inference prompts and the checking of generated sequences all go through the
functions of this module, so the three can never disagree.

Token space (one flat id space shared by the GAR's input and output)::

    0 PAD | 1 BOS | 2 EOP | 3 EOS | 4 .. 4+P-1 phonemes | 4+P .. 4+P+C-1 first-codebook codes

Layouts (``P_i`` phoneme tokens, ``a`` first-codebook acoustic tokens)::

    ella-v : [P1 .. Pn] BOS P1 a a a EOP P2 a a EOP ... Pn a a EOP EOS
    ella-v, global_advance=False : BOS P1 a a a EOP P2 a a EOP ... Pn a a EOP EOS
    ella-v, inline_phonemes=False : [P1 .. Pn] BOS a a a EOP a a EOP ... a a EOP EOS
    vall-e : [P1 .. Pn] BOS a a a a a ... a EOS

The paper's two ablations are ``global_advance=False`` ("w/o global advance") and
``inline_phonemes=False`` ("w/o in-sequence phonemes": the EOPs still close each phoneme, so the
forced decoding rules count phonemes by their EOPs). ``local_advance=0`` turns ELLA-V's local
advance off, a variant the paper describes but does not ablate.

The interleaved part is a merge of timed events. Acoustic frame ``t`` happens at time ``t``. The
transition from phoneme ``i`` to ``i+1`` (the tokens ``EOP_i P_{i+1}``) happens at time
``tau_i = max(start_{i+1} - local_advance, tau_{i-1})`` with ``tau_0 = 0``: "local advance" moves
the EOP and the next phoneme ``local_advance`` frames before the phoneme boundary, clamped so that
transitions never overtake one another. At equal times a transition comes before the frame. The
last phoneme's EOP and the EOS happen at ``T`` (the number of frames). A phoneme's *sequence frame
count* (the frames between its token and its EOP) can therefore differ from its aligned duration
by the advance; :func:`sequence_to_alignment_durations` undoes the shift.

Loss is computed only where the target is an acoustic, EOP or EOS token
(:meth:`TokenSpace.loss_target_mask`), in every layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

LAYOUTS = ("ella-v", "vall-e")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenSpace:
    """The flat GAR id space: specials, then phonemes, then first-codebook acoustic codes.

    Args:
        num_phonemes: Number of phoneme symbols (the phoneme tokenizer's vocabulary, including its
            word-boundary / pause / unknown symbols).
        codebook_size: Number of codes in one codec codebook.
    """

    num_phonemes: int
    codebook_size: int

    PAD = 0
    BOS = 1
    EOP = 2
    EOS = 3
    NUM_SPECIALS = 4

    def __post_init__(self) -> None:
        if self.num_phonemes < 1:
            raise ValueError(f"num_phonemes must be >= 1, got {self.num_phonemes}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")

    @property
    def phoneme_offset(self) -> int:
        """Flat id of phoneme 0."""
        return self.NUM_SPECIALS

    @property
    def acoustic_offset(self) -> int:
        """Flat id of acoustic code 0."""
        return self.NUM_SPECIALS + self.num_phonemes

    @property
    def vocab_size(self) -> int:
        """Size of the flat id space."""
        return self.acoustic_offset + self.codebook_size

    # -- scalar conversions -------------------------------------------------------------------
    def phoneme_id(self, phoneme: int) -> int:
        """Flat id of phoneme index ``phoneme`` (0-based in the tokenizer's phoneme vocabulary)."""
        if not 0 <= phoneme < self.num_phonemes:
            raise ValueError(f"phoneme index {phoneme} outside [0, {self.num_phonemes})")
        return self.phoneme_offset + phoneme

    def phoneme_tensor(self, phonemes, device=None):
        """Flat ids of phoneme indices (a list or tensor of any shape) as a torch LongTensor of that shape.

        Raises:
            ValueError: An index outside ``[0, num_phonemes)``.
        """
        import torch  # this module is torch-free otherwise

        ids = torch.as_tensor(phonemes, dtype=torch.long, device=device)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_phonemes):
            raise ValueError(f"phoneme indices must lie in [0, {self.num_phonemes})")
        return ids + self.phoneme_offset

    def acoustic_id(self, code: int) -> int:
        """Flat id of first-codebook code ``code``."""
        if not 0 <= code < self.codebook_size:
            raise ValueError(f"acoustic code {code} outside [0, {self.codebook_size})")
        return self.acoustic_offset + code

    def is_phoneme(self, token: int) -> bool:
        return self.phoneme_offset <= token < self.acoustic_offset

    def is_acoustic(self, token: int) -> bool:
        return self.acoustic_offset <= token < self.vocab_size

    # -- tensor helpers (work on torch tensors and numpy arrays alike) ------------------------
    def loss_target_mask(self, ids):
        """Boolean mask of positions whose token is a loss target: acoustic, EOP or EOS.

        Args:
            ids: Integer tensor/array of flat ids, any shape (``IGNORE_INDEX`` entries give False).

        Returns:
            Boolean tensor/array of the same shape.
        """
        return (ids >= self.acoustic_offset) & (ids < self.vocab_size) | (ids == self.EOP) | (ids == self.EOS)

    def phoneme_mask(self, ids):
        """Boolean mask of phoneme tokens (same shape as ``ids``)."""
        return (ids >= self.phoneme_offset) & (ids < self.acoustic_offset)

    def acoustic_mask(self, ids):
        """Boolean mask of acoustic tokens (same shape as ``ids``)."""
        return (ids >= self.acoustic_offset) & (ids < self.vocab_size)

    def without_text(self, ids: torch.Tensor) -> torch.Tensor:
        """A copy of ``ids`` (any shape) with every phoneme token replaced by ``PAD`` (a zero embedding).

        The text-free sequence of classifier-free guidance: what the GAR saw in its text-dropped
        training rows and what its unconditional branch reads at inference.
        """
        return ids.masked_fill(self.phoneme_mask(ids), self.PAD)


@dataclass(frozen=True)
class LayoutSpec:
    """Which layout to build and its options.

    Args:
        layout: ``"ella-v"`` or ``"vall-e"``.
        global_advance: Put the whole phoneme sequence before BOS (required for ``vall-e``).
        local_advance: Frames by which EOP and the next phoneme move before each phoneme
            boundary (``ella-v`` only).
        inline_phonemes: Put each phoneme token before its frames after BOS (``ella-v`` only;
            ``False`` is the paper's "without in-sequence phonemes" ablation, which keeps the EOPs
            and needs the global-advance prefix).
    """

    layout: str = "ella-v"
    global_advance: bool = True
    local_advance: int = 0
    inline_phonemes: bool = True

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"Unknown layout {self.layout!r}; expected one of {LAYOUTS}")
        if self.local_advance < 0:
            raise ValueError(f"local_advance must be >= 0 frames, got {self.local_advance}")
        if self.layout == "vall-e":
            if not self.global_advance:
                raise ValueError(
                    "layout='vall-e' needs global_advance=True: without the phoneme prefix the VALL-E "
                    "sequence carries no text at all."
                )
            if self.local_advance:
                raise ValueError(
                    f"layout='vall-e' has no phoneme tokens to advance; set local_advance=0 (got {self.local_advance})."
                )
            if not self.inline_phonemes:
                raise ValueError("inline_phonemes=False is an ablation of the ella-v layout; vall-e has no in-sequence phonemes to remove.")
        elif not self.inline_phonemes and not self.global_advance:
            raise ValueError(
                "inline_phonemes=False needs global_advance=True: without in-sequence phonemes and without the "
                "phoneme prefix the sequence carries no text at all."
            )

    @property
    def interleaved(self) -> bool:
        return self.layout == "ella-v"


@dataclass
class GarSequence:
    """A GAR sequence built by :func:`build_gar_sequence`.

    Attributes:
        input_ids: Flat ids, length ``L``.
        labels: Same length; the id where it is a loss target, ``IGNORE_INDEX`` elsewhere (labels
            are aligned with ``input_ids``; the model shifts them).
        prefix_length: Number of tokens before BOS (the global-advance phoneme prefix).
        complete: True when the sequence ends with EOS (a training sequence); False for a prompt
            that generation continues.
    """

    input_ids: list[int]
    labels: list[int]
    prefix_length: int
    complete: bool


@dataclass
class ParsedGarSequence:
    """The inverse of :func:`build_gar_sequence`.

    Attributes:
        prefix_phonemes: Phoneme indices of the global-advance prefix (empty without one).
        phonemes: Phoneme indices in the order their tokens appear after BOS (``ella-v``).
        frame_counts: Acoustic frames each of those phoneme tokens owns in the sequence (the frames
            between the token and its EOP, or the end of the sequence for an unfinished phoneme).
        codes: First-codebook codes in order (0-based codebook indices).
        closed_phonemes: How many phoneme tokens have been closed by an EOP.
        complete: True when the sequence ended with EOS.
    """

    prefix_phonemes: list[int] = field(default_factory=list)
    phonemes: list[int] = field(default_factory=list)
    frame_counts: list[int] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    closed_phonemes: int = 0
    complete: bool = False


class LayoutError(ValueError):
    """A sequence that the layout rule cannot produce."""


def _transition_times(durations: Sequence[int], local_advance: int) -> list[int]:
    """``tau_i`` for each transition into phoneme ``i+1`` (0-based: entry ``i`` opens phoneme ``i+1``)."""
    times: list[int] = []
    start = 0
    previous = 0
    for duration in durations[:-1] if durations else []:
        start += duration
        previous = max(start - local_advance, previous)
        times.append(previous)
    return times


def build_gar_sequence(
    phonemes: Sequence[int],
    durations: Sequence[int] | None,
    codes: Sequence[int] | None,
    space: TokenSpace,
    spec: LayoutSpec,
) -> GarSequence:
    """Build the GAR sequence (and its labels) for one utterance, or a prompt to continue.

    Args:
        phonemes: Phoneme indices ``[n]`` (0-based in the tokenizer's phoneme vocabulary). For a
            prompt these are the prompt's *and* the target's phonemes.
        durations: Aligned frame counts ``[m]`` of the first ``m`` phonemes (``sum == len(codes)``).
            ``m == n`` builds a complete training sequence ending in EOS; ``m < n`` builds a prompt
            that ends inside phoneme ``m+1`` (``ella-v``) or after the prompt's frames (``vall-e``),
            ready for generation to continue. ``None`` means no audio at all (``m = 0``).
        codes: First-codebook codes ``[T]`` (0-based), ``T = sum(durations)``.
        space: The token space.
        spec: The layout.

    Returns:
        A :class:`GarSequence`.

    Raises:
        ValueError: If the inputs are inconsistent (lengths, negative durations, ids out of range).
    """
    phonemes = [int(p) for p in phonemes]
    durations = [] if durations is None else [int(d) for d in durations]
    codes = [] if codes is None else [int(c) for c in codes]
    if not phonemes:
        raise ValueError("Cannot build a GAR sequence without phonemes.")
    if len(durations) > len(phonemes):
        raise ValueError(f"{len(durations)} durations for {len(phonemes)} phonemes")
    if any(d < 0 for d in durations):
        raise ValueError(f"Durations must be >= 0, got {durations}")
    if sum(durations) != len(codes):
        raise ValueError(f"Durations sum to {sum(durations)} frames but there are {len(codes)} codes")
    complete = len(durations) == len(phonemes)
    phoneme_ids = [space.phoneme_id(p) for p in phonemes]
    acoustic_ids = [space.acoustic_id(c) for c in codes]

    ids: list[int] = list(phoneme_ids) if spec.global_advance else []
    prefix_length = len(ids)
    ids.append(space.BOS)

    if not spec.interleaved:
        ids.extend(acoustic_ids)
        if complete:
            ids.append(space.EOS)
    else:
        num_frames = len(codes)
        # Events: (time, order, index). order 0 = transition into phoneme `index`, 1 = frame, 2 = final.
        events: list[tuple[int, int, int]] = [(t, 1, t) for t in range(num_frames)]
        transitions = _transition_times(durations, spec.local_advance)
        if not complete and durations:
            # A prompt opens the first target phoneme at its (advanced) boundary.
            last = transitions[-1] if transitions else 0
            transitions.append(max(num_frames - spec.local_advance, last))
        events.extend((tau, 0, i + 1) for i, tau in enumerate(transitions))
        if complete:
            events.append((num_frames, 2, -1))
        if spec.inline_phonemes:
            ids.append(phoneme_ids[0])
        for _, order, index in sorted(events):
            if order == 0:
                ids.extend((space.EOP, phoneme_ids[index]) if spec.inline_phonemes else (space.EOP,))
            elif order == 1:
                ids.append(acoustic_ids[index])
            else:
                ids.extend((space.EOP, space.EOS))
    mask = [space.loss_target_mask(t) for t in ids]
    labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask)]
    return GarSequence(input_ids=ids, labels=labels, prefix_length=prefix_length, complete=complete)


def parse_gar_sequence(
    ids: Sequence[int],
    space: TokenSpace,
    spec: LayoutSpec,
    *,
    strict: bool = True,
) -> ParsedGarSequence:
    """Parse a (possibly unfinished, possibly padded) GAR sequence back into its parts.

    Leading PAD tokens (left padding) and anything after EOS (right padding) are ignored.

    Args:
        ids: Flat ids ``[L]``.
        space: The token space.
        spec: The layout the sequence was built with.
        strict: Raise :class:`LayoutError` on any token the layout cannot produce at that point
            (for ``ella-v`` with a prefix this includes inline phonemes that do not follow the
            prefix, and EOS before the last phoneme's EOP). With ``strict=False`` unexpected tokens
            are skipped.

    Returns:
        A :class:`ParsedGarSequence`.
    """
    ids = [int(t) for t in ids]
    out = ParsedGarSequence()
    position = 0
    while position < len(ids) and ids[position] == space.PAD:
        position += 1
    while position < len(ids) and ids[position] != space.BOS:
        token = ids[position]
        if not space.is_phoneme(token):
            if strict:
                raise LayoutError(f"token {token} at position {position}: only phonemes may precede BOS")
        else:
            out.prefix_phonemes.append(token - space.phoneme_offset)
        position += 1
    if position == len(ids):
        return out  # no BOS yet: only (part of) the prefix
    if spec.global_advance and strict and not out.prefix_phonemes:
        raise LayoutError("global_advance=True but the sequence has no phoneme prefix before BOS")
    position += 1

    def fail(message: str) -> None:
        if strict:
            raise LayoutError(f"token {ids[position]} at position {position}: {message}")

    in_phoneme = False  # ella-v: a phoneme token is open (awaiting frames or EOP)
    implicit = spec.interleaved and not spec.inline_phonemes  # phonemes are opened by BOS / EOP

    def open_next() -> None:  # inline_phonemes=False: the next prefix phoneme starts without a token
        nonlocal in_phoneme
        if len(out.phonemes) < len(out.prefix_phonemes):
            out.phonemes.append(out.prefix_phonemes[len(out.phonemes)])
            out.frame_counts.append(0)
            in_phoneme = True

    if implicit:
        open_next()
    for position in range(position, len(ids)):  # noqa: B020 (fail() reports the current position)
        token = ids[position]
        if spec.interleaved:
            if space.is_acoustic(token):
                if not in_phoneme:
                    fail("acoustic token outside a phoneme (expected a phoneme after BOS/EOP)")
                    continue
                out.codes.append(token - space.acoustic_offset)
                out.frame_counts[-1] += 1
            elif token == space.EOP:
                if not in_phoneme:
                    fail("EOP without an open phoneme")
                    continue
                in_phoneme = False
                out.closed_phonemes += 1
                if implicit:
                    open_next()
            elif space.is_phoneme(token):
                if implicit:
                    fail("a phoneme token after BOS, but this layout has no in-sequence phonemes")
                    continue
                if in_phoneme:
                    fail("phoneme before the previous phoneme's EOP")
                    continue
                index = len(out.phonemes)
                phoneme = token - space.phoneme_offset
                if out.prefix_phonemes and (
                    index >= len(out.prefix_phonemes) or out.prefix_phonemes[index] != phoneme
                ):
                    fail(f"phoneme {phoneme} does not follow the prefix at phoneme #{index}")
                    continue
                out.phonemes.append(phoneme)
                out.frame_counts.append(0)
                in_phoneme = True
            elif token == space.EOS:
                if in_phoneme or (out.prefix_phonemes and out.closed_phonemes != len(out.prefix_phonemes)):
                    fail("EOS before the last phoneme's EOP")
                    continue
                out.complete = True
                break
            else:
                fail("unexpected token after BOS")
        else:
            if space.is_acoustic(token):
                out.codes.append(token - space.acoustic_offset)
            elif token == space.EOS:
                out.complete = True
                break
            else:
                fail("only acoustic tokens and EOS may follow BOS in the vall-e layout")
    return out


def sequence_to_alignment_durations(frame_counts: Sequence[int], local_advance: int) -> list[int]:
    """Undo the local-advance shift: per-phoneme aligned durations from sequence frame counts.

    Every transition sits ``local_advance`` frames before the boundary it stands for, so frame
    ``t`` belongs to the phoneme that owns sequence position ``t - local_advance`` (the first
    phoneme for ``t < local_advance``): the first phoneme gains ``local_advance`` frames and the
    same number is taken from the end. When the last phoneme owns fewer than ``local_advance``
    frames (a generated sequence may do that), the rest is taken from the phonemes before it, so
    no frame's phoneme moves by anything but the advance. Exact for sequences whose transitions
    were not clamped (the first phoneme lasted at least ``local_advance`` frames).

    Args:
        frame_counts: Sequence frame counts ``[n]`` (from :func:`parse_gar_sequence`).
        local_advance: The layout's local advance in frames.

    Returns:
        Aligned durations ``[n]``: non-negative, same total.
    """
    durations = [int(c) for c in frame_counts]
    if len(durations) < 2 or local_advance <= 0:
        return durations
    shift = min(int(local_advance), sum(durations[1:]))  # frames that move to the first phoneme
    durations[0] += shift
    excess = shift
    for i in range(len(durations) - 1, 0, -1):  # take them from the end
        taken = min(excess, durations[i])
        durations[i] -= taken
        excess -= taken
        if not excess:
            break
    return durations


def frame_phonemes(phonemes: Sequence[int], durations: Sequence[int], num_frames: int | None = None) -> list[int]:
    """The phoneme index each frame is aligned to: durations expanded to frames.

    The one durations-to-frames rule of the package (the NAR's aligned phonemes, the codec's
    phoneme-distillation targets, the first-codebook statistics).

    Args:
        phonemes: Phoneme indices ``[n]``.
        durations: Aligned frames per phoneme ``[n]`` (from the aligner, or
            :func:`sequence_to_alignment_durations` of a generated sequence).
        num_frames: Expected total; checked when given.

    Returns:
        ``[sum(durations)]`` phoneme indices.

    Raises:
        LayoutError: On a length mismatch or a negative duration.
    """
    if len(phonemes) != len(durations) or any(d < 0 for d in durations):
        raise LayoutError(f"{len(phonemes)} phonemes need as many non-negative durations, got {list(durations)[:8]}...")
    per_frame = [int(p) for p, d in zip(phonemes, durations) for _ in range(int(d))]
    if num_frames is not None and len(per_frame) != num_frames:
        raise LayoutError(f"The durations cover {len(per_frame)} frames, expected {num_frames}.")
    return per_frame


def frame_phoneme_ids(phonemes: Sequence[int], durations: Sequence[int], space: TokenSpace, num_frames: int | None = None) -> list[int]:
    """Flat id of the phoneme each frame is aligned to (the NAR's ``frame_phoneme_ids``).

    Args:
        phonemes: Phoneme indices ``[n]``.
        durations: Aligned frames per phoneme ``[n]``.
        space: The token space (gives the flat phoneme ids).
        num_frames: Expected total; checked when given.

    Returns:
        ``[sum(durations)]`` flat phoneme ids (:func:`frame_phonemes` mapped to the GAR's ids).

    Raises:
        LayoutError: On a length mismatch or a negative duration.
    """
    return [space.phoneme_id(p) for p in frame_phonemes(phonemes, durations, num_frames)]
