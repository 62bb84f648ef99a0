"""Transitions between the pieces of an episode: one per cut, clamped to what each side has, and
optionally moved onto marks (beats) such as footsteps or a chime.

Works in frames on plain lengths, so it is cheap and testable without any media.
"""

from __future__ import annotations

from dataclasses import dataclass

from .specs import Transition


@dataclass
class Join:
    kind: str  # cut | crossfade | dip-to-black
    overlap: int = 0  # crossfade frames shared by both sides
    fade_out: int = 0  # dip: frames of the left item fading to black
    fade_in: int = 0  # dip: frames of the right item fading from black
    snapped_to: float | None = None  # the beat this cut was moved onto (seconds), if any


def plan_joins(lengths: list[int], transitions: list[Transition], fps: int) -> list[Join]:
    """One join between each pair of pieces; ``transitions[i]`` joins piece i to piece i+1.

    A piece joined on both sides gives each side at most half its frames, so no transition ever
    needs more frames than a piece has.
    """
    if len(transitions) != max(0, len(lengths) - 1):
        raise ValueError(f"need {max(0, len(lengths) - 1)} transitions for {len(lengths)} pieces, got {len(transitions)}")
    joins = []
    last = len(lengths) - 1
    for i, tr in enumerate(transitions):
        cap_a = lengths[i] if i == 0 else lengths[i] // 2
        cap_b = lengths[i + 1] if i + 1 == last else lengths[i + 1] // 2
        if tr.type == "crossfade":
            k = min(int(round(tr.duration * fps)), cap_a, cap_b)
            joins.append(Join("crossfade", overlap=max(k, 0)))
        elif tr.type == "dip-to-black":
            half = int(round(tr.duration * fps / 2))
            joins.append(Join("dip-to-black", fade_out=min(half, cap_a), fade_in=min(half, cap_b)))
        else:
            joins.append(Join("cut"))
    return joins


def starts_of(lengths: list[int], joins: list[Join]) -> list[int]:
    """First output frame of each piece."""
    starts = [0]
    for i, j in enumerate(joins):
        starts.append(starts[-1] + lengths[i] - j.overlap)
    return starts


def cut_frame(start_next: int, join: Join) -> float:
    """Where the cut 'lands' (output frame): the start of the next piece, or the middle of a crossfade."""
    return start_next + join.overlap / 2


def snap_to_beats(lengths: list[int], transitions: list[Transition], fps: int, beats: list[float],
                  min_keep: list[int], max_shift: float = 1.5) -> tuple[list[int], list[Join]]:
    """Shorten pieces so each cut lands on the latest beat at or before where it would fall.

    Only cuts whose transition has ``on_beat`` move, by at most ``max_shift`` seconds, and a piece
    never drops below ``min_keep[i]`` frames. Returns the new lengths and the joins (each records the
    beat it was snapped to). Pieces are only ever shortened: a shot is never stretched or frozen.
    """
    lengths = list(lengths)
    if not beats:
        return lengths, plan_joins(lengths, transitions, fps)
    marks = sorted(beats)
    for i, tr in enumerate(transitions):
        if not tr.on_beat:
            continue
        joins = plan_joins(lengths, transitions, fps)
        starts = starts_of(lengths, joins)
        at = cut_frame(starts[i + 1], joins[i]) / fps
        candidates = [b for b in marks if at - max_shift - 1e-9 <= b <= at + 1e-9]
        if not candidates:
            continue
        b = candidates[-1]
        shift = int(round((at - b) * fps))
        shift = min(shift, max(0, lengths[i] - min_keep[i]))
        lengths[i] -= shift
    joins = plan_joins(lengths, transitions, fps)
    starts = starts_of(lengths, joins)
    for i, tr in enumerate(transitions):
        if tr.on_beat:
            at = cut_frame(starts[i + 1], joins[i]) / fps
            hit = [b for b in marks if abs(b - at) <= 0.5 / fps + 1e-9]
            joins[i].snapped_to = hit[0] if hit else None
    return lengths, joins
