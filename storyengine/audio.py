"""Procedural ambience beds, BS.1770 loudness, fades, crossfades and 16-bit WAV output.

Everything is synthesised with numpy/scipy from a seed, so the same (name, seconds, seed)
always gives the same samples. Audio is float32 of shape (n, 2), nominally in [-1, 1].
"""

from __future__ import annotations

import wave
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from scipy import ndimage, signal

TARGET_LUFS = -16.0
"""Integrated loudness episodes are normalised to."""

CEILING_DBFS = -1.0
"""Highest (oversampled) peak allowed after normalisation."""

BED_LUFS = -20.0
"""Loudness each ambience bed is delivered at, so beds crossfade without jumps."""

SYNTH_CHUNK_S, SYNTH_XFADE_S = 20.0, 1.0
"""Ambience is synthesised in pieces this long, crossfaded this long (bounded memory)."""

# ---------------------------------------------------------------------------
# Loudness (ITU-R BS.1770-4)
# ---------------------------------------------------------------------------


def k_weighting(sample_rate: int) -> np.ndarray:
    """Second-order sections of the K-weighting filter (pre-filter shelf, then RLB high-pass).

    The analogue prototypes are re-derived for any rate (as libebur128 does); at 48 kHz they
    equal the coefficients printed in BS.1770-4, Tables 1 and 2.
    """
    fs = float(sample_rate)
    # Stage 1: high shelf, about +4 dB above ~1.7 kHz (head diffraction).
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = np.tan(np.pi * f0 / fs)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf_b = [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0]
    shelf_a = [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    # Stage 2: RLB high-pass at ~38 Hz.
    f0, q = 38.13547087602444, 0.5003270373238773
    k = np.tan(np.pi * f0 / fs)
    a0 = 1.0 + k / q + k * k
    hp_b = [1.0, -2.0, 1.0]
    hp_a = [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf_b + shelf_a, hp_b + hp_a], dtype=np.float64)


def _as_2d(audio: np.ndarray, float64: bool = True) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float64) if float64 else np.asarray(audio)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"audio must be (n,) or (n, channels), got shape {np.shape(audio)}")
    return x


CHUNK_S = 10.0
"""Long signals are filtered, measured and limited in chunks of this many seconds (bounded memory)."""


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for s in range(0, n, size):
        yield s, min(n, s + size)


def _hop_energies(x: np.ndarray, sample_rate: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """K-weighted sums of squares per ``hop`` samples (full hops only) and per channel, plus
    the whole-signal sums; filtered chunk by chunk with carried filter state."""
    sos = k_weighting(sample_rate)
    zi = np.zeros((sos.shape[0], 2, x.shape[1]))
    size = max(1, int(CHUNK_S * sample_rate) // hop) * hop
    hops, total = [], np.zeros(x.shape[1])
    carry = np.zeros((0, x.shape[1]))
    for s, e in _chunks(x.shape[0], size):
        y, zi = signal.sosfilt(sos, np.asarray(x[s:e], dtype=np.float64), axis=0, zi=zi)
        np.square(y, out=y)
        total += y.sum(axis=0)
        y = np.concatenate([carry, y]) if carry.size else y
        full = (y.shape[0] // hop) * hop
        if full:
            hops.append(y[:full].reshape(-1, hop, y.shape[1]).sum(axis=1))
        carry = y[full:]
    h = np.concatenate(hops) if hops else np.zeros((0, x.shape[1]))
    return h, total


def loudness(audio: np.ndarray, sample_rate: int = 48000) -> float:
    """Integrated loudness in LUFS per ITU-R BS.1770-4 (channels weighted 1.0: mono/stereo).

    400 ms blocks with 75 % overlap, -70 LUFS absolute gate, -10 LU relative gate.
    Returns -inf for silence. Audio shorter than one block is measured as a single block.
    """
    x = _as_2d(audio, float64=False)
    n = x.shape[0]
    if n == 0:
        return float("-inf")
    hop = int(round(0.1 * sample_rate))
    block = 4 * hop
    hops, total = _hop_energies(x, sample_rate, hop)
    if n < block:
        z = (total / n)[None, :]
    else:
        c = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(hops, axis=0)])
        z = (c[4:] - c[:-4]) / block  # one 400 ms block per 100 ms hop
    power = z.sum(axis=1)  # G_i = 1.0 for L, R (and C)
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10.0 * np.log10(power)
    gated = power[lk > -70.0]
    if gated.size == 0:
        return float("-inf")
    rel = -0.691 + 10.0 * np.log10(gated.mean()) - 10.0
    final = power[(lk > -70.0) & (lk > rel)]
    return float(-0.691 + 10.0 * np.log10(final.mean()))


def true_peak_dbfs(audio: np.ndarray, oversample: int = 4, sample_rate: int = 48000) -> float:
    """Peak level in dBFS of the signal oversampled ``oversample``x (an estimate of true peak)."""
    x = _as_2d(audio, float64=False)
    if x.size == 0:
        return float("-inf")
    peak = float(np.max(np.abs(x)))
    if oversample > 1:
        margin = 64  # input samples either side, so chunk edges do not ring
        for s, e in _chunks(x.shape[0], int(CHUNK_S * sample_rate)):
            a, b = max(0, s - margin), min(x.shape[0], e + margin)
            up = signal.resample_poly(np.asarray(x[a:b], dtype=np.float64), oversample, 1, axis=0)
            lo, hi = (s - a) * oversample, (e - a) * oversample
            peak = max(peak, float(np.max(np.abs(up[lo:hi]))))
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def limit(audio: np.ndarray, sample_rate: int, ceiling_dbfs: float, window_s: float = 0.01) -> np.ndarray:
    """Smooth peak limiter, in place on float32: every sample ends at or below ``ceiling_dbfs``.

    The gain curve is a min-filter followed by a moving average of the same width, so it is
    never above the gain a sample needs and it ramps over ``2 * window_s``.
    """
    x = _as_2d(audio, float64=False).astype(np.float32, copy=False)
    thr = 10.0 ** (ceiling_dbfs / 20.0)
    if x.size == 0 or float(np.max(np.abs(x))) <= thr:
        return x
    half = max(1, int(window_s * sample_rate))
    size, margin = 2 * half + 1, 2 * half + 2
    n = x.shape[0]
    gains = []
    for s, e in _chunks(n, int(CHUNK_S * sample_rate)):
        a, b = max(0, s - margin), min(n, e + margin)
        peak = np.max(np.abs(x[a:b]), axis=1).astype(np.float64)
        need = np.minimum(1.0, thr / np.maximum(peak, 1e-12))
        g = ndimage.minimum_filter1d(need, size=size, mode="nearest")
        g = ndimage.uniform_filter1d(g, size=size, mode="nearest")
        gains.append((s, e, g[s - a : s - a + (e - s)].astype(np.float32)))
    for s, e, g in gains:  # apply only after every gain is known (they overlap the neighbours)
        x[s:e] *= g[:, None]
        np.clip(x[s:e], -thr, thr, out=x[s:e])
    return x


def normalize(
    audio: np.ndarray,
    sample_rate: int = 48000,
    target_lufs: float = TARGET_LUFS,
    ceiling_dbfs: float = CEILING_DBFS,
) -> np.ndarray:
    """Gain ``audio`` to ``target_lufs`` integrated, limiting peaks (4x oversampled) to ``ceiling_dbfs``.

    Returns float32; works on a float32 copy (the input is left alone).
    """
    out = _as_2d(audio, float64=False).astype(np.float32, copy=True)
    if loudness(out, sample_rate) == float("-inf"):
        return out
    threshold = ceiling_dbfs
    for _ in range(6):
        lufs = loudness(out, sample_rate)
        out *= np.float32(10.0 ** ((target_lufs - lufs) / 20.0))
        out = limit(out, sample_rate, threshold)
        over = true_peak_dbfs(out, sample_rate=sample_rate) - ceiling_dbfs
        if abs(loudness(out, sample_rate) - target_lufs) < 0.05 and over <= 0.0:
            break
        if over > 0.0:  # inter-sample peaks: tighten the sample ceiling
            threshold -= over + 0.05
    return out


# ---------------------------------------------------------------------------
# Fades, crossfades, WAV
# ---------------------------------------------------------------------------


def fade(audio: np.ndarray, sample_rate: int, fade_in: float = 0.01, fade_out: float = 0.01) -> np.ndarray:
    """Raised-cosine fade in/out (seconds) so a clip starts and ends at silence: no clicks."""
    x = _as_2d(audio, float64=False).astype(np.float32, copy=True)
    n = x.shape[0]
    for seconds, head in ((fade_in, True), (fade_out, False)):
        m = min(n, int(round(seconds * sample_rate)))
        if m <= 0:
            continue
        ramp = (np.sin(0.5 * np.pi * np.arange(m) / m) ** 2).astype(np.float32)  # starts at exactly 0
        if head:
            x[:m] *= ramp[:, None]
        else:
            x[n - m :] *= ramp[::-1, None]
    return x


def equal_power_ramps(m: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade_out, fade_in) gain curves of length ``m`` with out² + in² = 1 (uncorrelated sources)."""
    t = (np.arange(m) + 0.5) / max(m, 1)
    return np.cos(0.5 * np.pi * t), np.sin(0.5 * np.pi * t)


def crossfade(a: np.ndarray, b: np.ndarray, seconds: float, sample_rate: int = 48000) -> np.ndarray:
    """Join ``a`` then ``b`` overlapping by ``seconds`` with an equal-power crossfade."""
    a2, b2 = _as_2d(a), _as_2d(b)
    m = min(int(round(seconds * sample_rate)), a2.shape[0], b2.shape[0])
    if m <= 0:
        return np.concatenate([a2, b2]).astype(np.float32)
    g_out, g_in = equal_power_ramps(m)
    mid = a2[-m:] * g_out[:, None] + b2[:m] * g_in[:, None]
    return np.concatenate([a2[:-m], mid, b2[m:]]).astype(np.float32)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = 48000) -> Path:
    """Write 16-bit PCM WAV (mono input is written as stereo). Values beyond ±1 are clipped."""
    x = _as_2d(audio, float64=False)
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2 if x.shape[1] == 1 else x.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        for s, e in _chunks(x.shape[0], int(CHUNK_S * sample_rate)):
            c = x[s:e]
            if c.shape[1] == 1:
                c = np.repeat(c, 2, axis=1)
            w.writeframes(np.clip(np.round(c * 32767.0), -32768, 32767).astype("<i2").tobytes())
    return path


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV as float32 (n, channels) and its sample rate."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM is supported, got {8 * w.getsampwidth()}-bit")
        ch, sr = w.getnchannels(), w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (data.reshape(-1, ch).astype(np.float32) / 32768.0), sr


def load_file(path: str | Path, seconds: float, sample_rate: int = 48000) -> np.ndarray:
    """A user's sound file (anything ffmpeg reads) as float32 stereo, exactly ``seconds`` long.

    A shorter file is looped with a 50 ms equal-power seam; the result is brought to
    :data:`BED_LUFS` so it sits like an ambience bed. MediaError names the file if ffmpeg cannot read it.
    """
    import subprocess

    from .errors import MediaError
    from .media import ffmpeg_exe

    path = Path(path)
    n = max(0, int(round(seconds * sample_rate)))
    if not path.is_file():
        raise MediaError(f"audio file not found: {path}")
    cmd = [ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-t", f"{seconds + 0.1:.3f}", "-f", "f32le",
           "-ac", "2", "-ar", str(sample_rate), "-"]
    res = subprocess.run(cmd, capture_output=True)
    if res.returncode != 0:
        raise MediaError(f"cannot read audio {path}: {res.stderr.decode('utf-8', 'replace')[-600:].strip()}")
    x = np.frombuffer(res.stdout, "<f4").reshape(-1, 2).copy()
    if x.shape[0] == 0:
        raise MediaError(f"audio file {path} has no audio samples")
    if x.shape[0] < n:
        seam = min(int(0.05 * sample_rate), x.shape[0] // 2)
        out = x
        while out.shape[0] < n:
            out = crossfade(out, x, seam / sample_rate, sample_rate) if seam > 0 else np.concatenate([out, x])
        x = out
    x = x[:n]
    if n and loudness(x, sample_rate) > -70:
        x = normalize(x, sample_rate, BED_LUFS, CEILING_DBFS)
    return x.astype(np.float32)


# ---------------------------------------------------------------------------
# Synthesis helpers
# ---------------------------------------------------------------------------


def _pink(rng: np.random.Generator, n: int, channels: int = 1) -> np.ndarray:
    """1/f noise by spectral shaping, unit RMS per channel."""
    spec = np.fft.rfft(rng.standard_normal((n, channels)), axis=0)
    f = np.arange(spec.shape[0], dtype=np.float64)
    f[0] = 1.0
    spec /= np.sqrt(f)[:, None]
    spec[0] = 0.0
    x = np.fft.irfft(spec, n=n, axis=0)
    return x / (np.std(x, axis=0, keepdims=True) + 1e-12)


def _band(x: np.ndarray, sr: int, lo: float | None, hi: float | None, order: int = 2) -> np.ndarray:
    if lo and hi:
        sos = signal.butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")
    elif lo:
        sos = signal.butter(order, lo, btype="highpass", fs=sr, output="sos")
    else:
        sos = signal.butter(order, hi, btype="lowpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x, axis=0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _smooth_random(rng: np.random.Generator, n: int, sr: int, rate_hz: float, channels: int = 1) -> np.ndarray:
    """A slow random control signal (about ``rate_hz`` wiggles per second), zero mean, unit std."""
    k = max(4, int(np.ceil(n / sr * rate_hz)) + 4)
    pts = rng.standard_normal((k, channels))
    t = np.linspace(0, k - 3, n)
    i = np.floor(t).astype(int)
    u = (t - i)[:, None]
    u = u * u * (3 - 2 * u)  # smoothstep between control points
    y = pts[i] * (1 - u) + pts[i + 1] * u
    return (y - y.mean(axis=0)) / (y.std(axis=0) + 1e-12)


def _reverb(x: np.ndarray, sr: int, rng: np.random.Generator, rt60: float, wet: float) -> np.ndarray:
    """Convolve with decaying, per-channel-decorrelated noise: a cheap diffuse hall."""
    m = int(rt60 * sr)
    t = np.arange(m) / sr
    ir = rng.standard_normal((m, x.shape[1])) * np.exp(-6.91 * t / rt60)[:, None]
    ir = _band(ir, sr, 150.0, 5000.0)
    ir /= np.sqrt(np.sum(ir**2, axis=0, keepdims=True)) + 1e-12
    tail = signal.fftconvolve(x, ir, axes=0)[: x.shape[0]]
    return (1.0 - wet) * x + wet * tail


def _place(n: int, events: list[tuple[int, np.ndarray, float, float]]) -> np.ndarray:
    """Sum (start, mono template, gain_left, gain_right) events into a stereo track."""
    out = np.zeros((n, 2))
    for start, tpl, gl, gr in events:
        if start >= n:
            continue
        seg = tpl[: n - start]
        out[start : start + seg.size, 0] += gl * seg
        out[start : start + seg.size, 1] += gr * seg
    return out


def _stereo_bed(rng: np.random.Generator, make: Callable[[int], np.ndarray], n: int, width: float) -> np.ndarray:
    """A common (centre) part plus ``width`` of independent left/right parts."""
    common = make(1)
    sides = make(2)
    return np.sqrt(1 - width**2) * common + width * sides


# ---------------------------------------------------------------------------
# The ambiences
# ---------------------------------------------------------------------------


def _carriage(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    secs = n / sr
    # Rumble: brown-ish noise under ~140 Hz, swaying slowly.
    brown = lambda ch: _band(np.cumsum(rng.standard_normal((n, ch)), axis=0) * 0.02, sr, 25.0, 140.0, 2)
    rumble = _unit(_stereo_bed(rng, brown, n, 0.35))
    rumble *= (1.0 + 0.18 * _smooth_random(rng, n, sr, 0.5))
    # Motor / axle hum: a low fundamental and a few harmonics, slowly wandering in pitch.
    f0 = 47.0 + 0.6 * _smooth_random(rng, n, sr, 0.2)[:, 0]
    phase = 2 * np.pi * np.cumsum(f0) / sr
    hum = sum(a * np.sin(h * phase) for h, a in ((1, 1.0), (2, 0.5), (3, 0.25), (5, 0.1)))
    # Wheel-on-rail clacks: each rail joint is hit by the two axles of a bogie ("ta-tak"),
    # then by the next bogie a beat later. 25 m rails at ~20 m/s: one joint every ~1.25 s.
    templates = []
    for _ in range(6):
        m = int(0.12 * sr)
        tt = np.arange(m) / sr
        click = _band(rng.standard_normal(m), sr, 350.0, 3200.0, 2) * np.exp(-tt / rng.uniform(0.012, 0.025))
        thump = np.sin(2 * np.pi * rng.uniform(65, 95) * tt) * np.exp(-tt / 0.045)
        tpl = 0.8 * _unit(click) * np.exp(-tt / 0.02) + 0.9 * thump
        tpl[: int(0.001 * sr)] *= np.linspace(0, 1, int(0.001 * sr))
        templates.append(tpl / np.max(np.abs(tpl)))
    speed = rng.uniform(18.0, 22.0)
    period = 25.0 / speed
    axle_gap = 2.5 / speed
    events = []
    tj = rng.uniform(0.15, period)
    while tj < secs:
        for offset, amp in ((0.0, 1.0), (axle_gap, 0.85), (0.42 * period, 0.55), (0.42 * period + axle_gap, 0.5)):
            at = tj + offset + rng.normal(0, 0.004)
            g = amp * rng.uniform(0.8, 1.1)
            pan = rng.uniform(-0.25, 0.25)
            events.append((int(at * sr), templates[rng.integers(len(templates))], g * (1 - pan), g * (1 + pan)))
        tj += period * rng.uniform(0.98, 1.02)
    clacks = _place(n, events)
    # Hiss: air and wheel squeal far off, high-passed.
    hiss = _unit(_band(rng.standard_normal((n, 2)), sr, 3500.0, None, 2))
    return 1.0 * rumble + 0.12 * hum[:, None] + 0.9 * clacks + 0.045 * hiss


def _platform(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    secs = n / sr
    # Crowd murmur: a dozen "voices", each a formant-ish noise band with syllable-rate
    # amplitude bursts, switched on and off in phrases; then a big reverberant hall.
    murmur = np.zeros((n, 2))
    for _ in range(12):
        centre = rng.uniform(350.0, 1400.0)
        v = _band(rng.standard_normal(n), sr, centre / 1.6, centre * 1.6, 2)
        syll = np.maximum(0.0, _smooth_random(rng, n, sr, rng.uniform(4.0, 6.5))[:, 0]) ** 1.5
        phrase = (_smooth_random(rng, n, sr, 0.4)[:, 0] > -0.3).astype(float)
        phrase = ndimage.uniform_filter1d(phrase, size=int(0.15 * sr))
        v = _unit(v) * syll * phrase
        pan = rng.uniform(-0.7, 0.7)
        murmur[:, 0] += v * (1 - pan)
        murmur[:, 1] += v * (1 + pan)
    murmur = _reverb(_unit(murmur), sr, rng, rt60=1.8, wet=0.7)
    # Noise bed of the station itself: pink, low-passed.
    bed = _unit(_band(_pink(rng, n, 2), sr, 40.0, 1800.0, 2))
    # Distant tones: a three-note station chime and an idling engine's low drone.
    chime = np.zeros((n, 2))
    notes = (659.25, 523.25, 392.0)
    t_at = rng.uniform(0.6, 2.0)
    while t_at < secs:
        for k, f in enumerate(notes):
            m = int(1.6 * sr)
            tt = np.arange(m) / sr
            tone = (np.sin(2 * np.pi * f * tt) + 0.3 * np.sin(4 * np.pi * f * tt)) * np.exp(-tt / 0.45)
            tone[: int(0.005 * sr)] *= np.linspace(0, 1, int(0.005 * sr))
            s = int((t_at + 0.55 * k) * sr)
            if s < n:
                seg = tone[: n - s]
                chime[s : s + seg.size] += seg[:, None] * np.array([0.9, 1.1])
        t_at += rng.uniform(9.0, 15.0)
    chime = _reverb(chime, sr, rng, rt60=2.2, wet=0.85)
    t = np.arange(n) / sr
    drone = np.sin(2 * np.pi * 55.0 * t) + 0.4 * np.sin(2 * np.pi * 110.3 * t)
    drone = drone * (0.6 + 0.4 * _smooth_random(rng, n, sr, 0.15)[:, 0])
    return 1.0 * murmur + 0.35 * bed + 0.5 * chime + 0.08 * drone[:, None]


def _rain(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    secs = n / sr
    bed = _unit(_band(_pink(rng, n, 2), sr, 300.0, 9000.0, 2))
    bed *= 1.0 + 0.12 * _smooth_random(rng, n, sr, 0.3)
    # Drops: Poisson impulses through a few short resonant "plink" templates.
    drops = np.zeros((n, 2))
    for _ in range(3):
        m = int(0.02 * sr)
        tt = np.arange(m) / sr
        tpl = np.sin(2 * np.pi * rng.uniform(1800, 5200) * tt) * np.exp(-tt / rng.uniform(0.002, 0.006))
        imp = np.zeros((n, 2))
        count = rng.poisson(120 * secs)
        pos = rng.integers(0, n, size=(count,))
        ch = rng.integers(0, 2, size=(count,))
        imp[pos, ch] = rng.pareto(3.0, size=count) * 0.3
        drops += signal.fftconvolve(imp, tpl[:, None], axes=0)[:n]
    far = _unit(_band(np.cumsum(rng.standard_normal((n, 1)), axis=0), sr, 30.0, 180.0, 2))
    return 1.0 * bed + 0.6 * drops + 0.3 * far


def _room(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    air = _unit(_stereo_bed(rng, lambda ch: _band(_pink(rng, n, ch), sr, 30.0, 1200.0, 2), n, 0.5))
    t = np.arange(n) / sr
    hum = np.sin(2 * np.pi * 50.0 * t) + 0.5 * np.sin(2 * np.pi * 100.0 * t) + 0.2 * np.sin(2 * np.pi * 150.0 * t)
    vent = _unit(_band(rng.standard_normal((n, 2)), sr, 200.0, 600.0, 2))
    return 1.0 * air + 0.06 * hum[:, None] + 0.15 * vent


AMBIENCES: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "carriage": _carriage,
    "platform": _platform,
    "rain": _rain,
    "room": _room,
}


def ambience(name: str, seconds: float, sample_rate: int = 48000, seed: int = 0) -> np.ndarray:
    """Synthesise ``seconds`` of the ambience ``name`` as float32 (n, 2) at ``BED_LUFS``.

    Deterministic in (name, seconds, sample_rate, seed); starts and ends with a 10 ms fade.

    Raises:
        ValueError: ``name`` is not one of ``AMBIENCES``, or ``seconds`` is negative.
    """
    if name not in AMBIENCES:
        raise ValueError(f"unknown ambience {name!r}; available: {', '.join(sorted(AMBIENCES))}")
    if seconds < 0:
        raise ValueError(f"ambience {name!r}: seconds must be >= 0, got {seconds}")
    n = int(round(seconds * sample_rate))
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    # Long beds are made of pieces of at most SYNTH_CHUNK_S, equal-power crossfaded over
    # SYNTH_XFADE_S, so memory stays bounded however long the episode is.
    sr = sample_rate
    piece, xf = int(SYNTH_CHUNK_S * sr), int(SYNTH_XFADE_S * sr)
    out = np.zeros((n, 2), dtype=np.float32)
    g_out, g_in = (g.astype(np.float32)[:, None] for g in equal_power_ramps(xf))
    s, k = 0, 0
    while True:
        e = n if n - s <= piece + xf else s + piece
        m = e - s + (xf if e < n else 0)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), k]))
        pre = int(0.5 * sr)  # synthesise a little early so filters and reverbs have settled
        x = normalize(AMBIENCES[name](m + pre, sr, rng)[pre:], sr, BED_LUFS, CEILING_DBFS - 2.0)
        if k > 0:
            x[:xf] *= g_in
        if e < n:
            x[m - xf :] *= g_out
        out[s : s + m] += x
        if e >= n:
            break
        s, k = e, k + 1
    return fade(out, sr, 0.01, 0.01)
