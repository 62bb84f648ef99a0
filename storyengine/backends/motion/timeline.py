"""From a :class:`~.prompt.Reading` to curves over time: when each blink, glance, turn and breath happens.

Steps share the shot in order (a step with a pinned action — "at the end" — lands there); the seed only
draws what the prompt leaves open (a direction not named, the exact instant inside a step, the idle
micro-motion), so the same prompt and seed always give the same curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .prompt import LIGHT_ACTIONS, Action, Reading


def _ss(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass
class Track:
    """A piecewise-smooth curve: keyframes (time, value), eased between them, held after the last."""

    keys: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 0.0)])

    def to(self, t0: float, t1: float, value: float) -> None:
        """Move from the value at ``t0`` to ``value`` by ``t1``."""
        start = self(t0)
        self.keys = [k for k in self.keys if k[0] < t0] + [(t0, start), (max(t1, t0 + 1e-3), value)]

    def __call__(self, t: float) -> float:
        k = self.keys
        if t <= k[0][0]:
            return k[0][1]
        for (a, va), (b, vb) in zip(k, k[1:]):
            if t <= b:
                return va + (vb - va) * _ss((t - a) / (b - a))
        return k[-1][1]


@dataclass
class Performance:
    """Per-shot curves (seconds → value); degrees for the head, [-1, 1] for gaze and smile, px at 360p for the body."""

    duration: float
    blinks: list[tuple[float, float]] = field(default_factory=list)  # (start, length) in seconds
    yaw: Track = field(default_factory=Track)
    pitch: Track = field(default_factory=Track)
    roll: Track = field(default_factory=Track)
    gaze_x: Track = field(default_factory=Track)
    gaze_y: Track = field(default_factory=Track)
    smile: Track = field(default_factory=Track)
    deep_breaths: list[tuple[float, float]] = field(default_factory=list)  # (start, size)
    sway_amp: float = 0.6
    shift: Track = field(default_factory=Track)
    breath_hz: float = 0.25
    phases: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    idle: float = 1.0
    light_pass: tuple[float, float] | None = None  # (start, end) seconds
    flicker: tuple[float, float] | None = None
    gain: Track = field(default_factory=Track)  # relative exposure change (dims / brightens)

    def closure(self, t: float) -> float:
        c = 0.0
        for t0, d in self.blinks:
            p = (t - t0) / d
            if 0.0 <= p <= 1.0:  # close fast, hold, open a little slower
                c = max(c, _ss(p / 0.35) if p < 0.35 else (1.0 if p < 0.55 else 1.0 - _ss((p - 0.55) / 0.45)))
        return c

    def head(self, t: float) -> tuple[float, float, float]:
        ph = self.phases
        micro = self.idle * 0.6
        return (self.yaw(t) + micro * math.sin(2 * math.pi * 0.13 * t + ph[0]),
                self.pitch(t) + micro * 0.6 * math.sin(2 * math.pi * 0.09 * t + ph[1]),
                self.roll(t) + micro * 0.4 * math.sin(2 * math.pi * 0.07 * t + ph[2]))

    def breath(self, t: float) -> float:
        b = self.idle * 1.0 * (0.5 - 0.5 * math.cos(2 * math.pi * self.breath_hz * t + self.phases[3]))
        for t0, size in self.deep_breaths:  # in over 1.4 s, out over 1.8 s
            p = t - t0
            if 0.0 <= p < 1.4:
                b += 2.5 * size * _ss(p / 1.4)
            elif 1.4 <= p < 3.2:
                b += 2.5 * size * (1.0 - _ss((p - 1.4) / 1.8))
        return b

    def sway(self, t: float) -> float:
        return self.sway_amp * math.sin(2 * math.pi * 0.21 * t + self.phases[1]) + self.shift(t)


def build(reading: Reading, duration: float, fps: int, rng: np.random.Generator, *, turn_degrees: float = 10.0,
          blink_ms: float = 150.0, amplitude: float = 1.0) -> Performance:
    """Schedule ``reading``'s actions over ``duration`` seconds (draws from ``rng`` in a fixed order)."""
    T = max(duration, 1e-3)
    perf = Performance(T, breath_hz=float(rng.uniform(0.2, 0.3)), phases=tuple(rng.uniform(0, 2 * math.pi, 4)),
                       idle=amplitude)
    steps = sorted({a.step for a in reading.actions if a.kind not in LIGHT_ACTIONS})
    order = {s: i for i, s in enumerate(steps)}
    n = max(1, len(steps))

    def slot(a: Action) -> tuple[float, float]:
        if a.at == "end":
            return 0.62 * T, 0.97 * T
        if a.at == "start":
            return 0.03 * T, 0.4 * T
        if a.kind in LIGHT_ACTIONS and a.step not in order:
            return 0.05 * T, 0.95 * T
        i = order.get(a.step, 0)
        return T * (0.05 + 0.9 * i / n), T * (0.05 + 0.9 * (i + 1) / n)

    def side(direction: str) -> float:
        if direction in ("left", "up"):
            return -1.0
        if direction in ("right", "down"):
            return 1.0
        return 1.0 if rng.random() < 0.5 else -1.0

    def snap(t: float) -> float:
        return round(t * fps) / fps

    length = {"slow": 1.7, "quick": 0.55}
    for a in reading.actions:
        t0, t1 = slot(a)
        span = t1 - t0
        jitter = float(rng.uniform(0.0, 0.15))
        dur = min(span, length.get(a.speed, 1.0))
        start = t0 + jitter * max(0.0, span - dur)
        amp = a.size * amplitude
        if a.kind == "blink":
            d = min(0.3, max(0.1, blink_ms / 1000.0 * {"slow": 1.6, "quick": 0.75}.get(a.speed, 1.0)))
            if a.count:
                times = [t0 + (k + 0.5) * span / a.count for k in range(a.count)]
            else:  # a natural cadence: every 2.5–4.5 s, at least once
                times, t = [], t0 + float(rng.uniform(0.2, 0.6)) * min(span, 2.5)
                while t < t1 or not times:
                    times.append(min(t, t1 - d))
                    t += float(rng.uniform(2.5, 4.5))
            for tm in times:  # a frame lands on the closed instant
                perf.blinks.append((snap(tm) - 0.45 * d, d))
        elif a.kind in ("glance", "look"):
            gx = side(a.direction) if a.direction in ("left", "right", "") else 0.0
            gy = side(a.direction) if a.direction in ("up", "down") else 0.0
            move = 0.35 if a.speed == "slow" else 0.15
            perf.gaze_x.to(start, start + move, gx * min(1.0, amp))
            perf.gaze_y.to(start, start + move, gy * min(1.0, amp))
            if a.kind == "glance":  # and back
                back = start + move + min(max(0.5, 0.5 * span), 1.4 if a.speed == "slow" else 0.9)
                perf.gaze_x.to(back, back + 0.2, 0.0)
                perf.gaze_y.to(back, back + 0.2, 0.0)
        elif a.kind == "look_camera":
            for tr in (perf.gaze_x, perf.gaze_y, perf.yaw, perf.pitch, perf.roll):
                tr.to(start, start + max(0.3, dur * 0.8), 0.0)
        elif a.kind == "turn":
            ramp = max(1.2, 0.8 * span) if a.speed == "slow" else dur
            perf.yaw.to(start, start + ramp, side(a.direction) * turn_degrees * amp)
        elif a.kind == "roll":
            perf.roll.to(start, start + max(0.5, dur), side(a.direction) * 0.6 * turn_degrees * amp)
        elif a.kind == "nod":
            perf.pitch.to(start, start + 0.35, 0.6 * turn_degrees * amp)
            perf.pitch.to(start + 0.35, start + 0.85, 0.0)
        elif a.kind == "smile":
            perf.smile.to(start, start + (1.4 if a.speed == "slow" else 0.6), min(1.5, amp))
        elif a.kind == "relax":
            perf.smile.to(start, start + 1.0, -0.6 * min(1.5, amp))
        elif a.kind == "breathe":
            perf.deep_breaths.append((start, amp))
        elif a.kind == "sway":
            perf.sway_amp = 2.5 * amp
        elif a.kind == "shift":
            perf.shift.to(start, start + max(1.0, dur), side(a.direction) * 3.0 * amp)
        elif a.kind == "light_pass":
            perf.light_pass = (t0, t1)
        elif a.kind == "flicker":
            perf.flicker = (t0, t1)
        elif a.kind in ("dim", "brighten"):
            perf.gain.to(t0, t0 + max(0.5, 0.8 * span), (-0.22 if a.kind == "dim" else 0.18) * a.size)
    return perf
