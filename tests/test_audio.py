"""Ambience synthesis, the BS.1770-4 meter, fades/crossfades and WAV output."""

import wave

import numpy as np
import pytest

from storyengine import audio

SR = 48000


def sine(freq: float, seconds: float, amp: float, sr: int = SR) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)


# --- the meter ------------------------------------------------------------


def test_k_weighting_matches_bs1770_tables_at_48k():
    sos = audio.k_weighting(48000)
    # BS.1770-4 Table 1 (pre-filter) and Table 2 (RLB filter).
    np.testing.assert_allclose(sos[0, :3], [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-9)
    np.testing.assert_allclose(sos[0, 3:], [1.0, -1.69065929318241, 0.73248077421585], atol=1e-9)
    np.testing.assert_allclose(sos[1, :3], [1.0, -2.0, 1.0])
    np.testing.assert_allclose(sos[1, 3:], [1.0, -1.99004745483398, 0.99007225036621], atol=1e-9)


def test_full_scale_997hz_sine_in_one_channel_reads_minus_3_01():
    s = sine(997, 5.0, 1.0)
    assert audio.loudness(np.stack([s, np.zeros_like(s)], 1), SR) == pytest.approx(-3.01, abs=0.02)


@pytest.mark.parametrize("sr", [44100, 32000])
def test_meter_at_other_sample_rates(sr):
    s = sine(997, 5.0, 1.0, sr)
    assert audio.loudness(np.stack([s, np.zeros_like(s)], 1), sr) == pytest.approx(-3.01, abs=0.03)


def test_stereo_sine_at_minus_20_dbfs_reads_minus_20():
    # Each channel: -20 dBFS peak -> mean square -23.01 dB; two channels add +3.01 dB;
    # the K-filter gain at 997 Hz (+0.691 dB) cancels the -0.691 offset.
    s = sine(997, 5.0, 10 ** (-20 / 20))
    assert audio.loudness(np.stack([s, s], 1), SR) == pytest.approx(-20.0, abs=0.02)


def test_relative_gate_ebu_tech_3341_case_3():
    quiet, loud = sine(1000, 10, 10 ** (-36 / 20)), sine(1000, 60, 10 ** (-23 / 20))
    x = np.concatenate([quiet, loud, quiet])
    assert audio.loudness(np.stack([x, x], 1), SR) == pytest.approx(-23.0, abs=0.1)


def test_absolute_gate_ignores_silence():
    s = sine(1000, 20, 10 ** (-23 / 20))
    padded = np.concatenate([np.zeros(20 * SR), s, np.zeros(20 * SR)])
    # Only the few blocks straddling an edge pull it down a little.
    assert audio.loudness(np.stack([padded] * 2, 1), SR) == pytest.approx(-23.0, abs=0.1)
    assert audio.loudness(np.zeros((SR, 2)), SR) == float("-inf")


def test_normalize_hits_target_under_the_ceiling():
    rng = np.random.default_rng(3)
    x = 0.05 * rng.standard_normal((4 * SR, 2))
    x[SR::SR // 3] = 0.9  # spikes the gain would push far over full scale
    y = audio.normalize(x, SR)
    assert y.dtype == np.float32
    assert audio.loudness(y, SR) == pytest.approx(-16.0, abs=0.1)
    assert 20 * np.log10(np.max(np.abs(y))) <= -1.0 + 1e-6
    assert audio.true_peak_dbfs(y) <= -1.0 + 0.05


# --- ambience -------------------------------------------------------------


@pytest.mark.parametrize("name", ["carriage", "platform", "rain", "room"])
def test_ambience_is_real_deterministic_stereo_audio(name):
    a = audio.ambience(name, 3.0, seed=7)
    assert a.shape == (3 * SR, 2) and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, audio.ambience(name, 3.0, seed=7))
    assert not np.allclose(a, audio.ambience(name, 3.0, seed=8))
    assert audio.loudness(a, SR) == pytest.approx(audio.BED_LUFS, abs=0.2)
    assert np.max(np.abs(a)) < 10 ** (-1 / 20)
    assert np.max(np.abs(a[:5])) < 1e-3 and np.max(np.abs(a[-5:])) < 1e-3  # faded: no click
    assert np.std(a[:, 0] - a[:, 1]) > 1e-3  # a stereo image, not dual mono


def test_ambiences_differ_from_each_other():
    beds = {n: audio.ambience(n, 2.0) for n in audio.AMBIENCES}
    spectra = {n: np.abs(np.fft.rfft(b[:, 0])) for n, b in beds.items()}
    bands = {n: np.array([s[lo:hi].sum() for lo, hi in ((20, 400), (400, 4000), (4000, 20000))]) for n, s in spectra.items()}
    shapes = {n: tuple(np.round(v / v.sum(), 2)) for n, v in bands.items()}
    assert len(set(shapes.values())) == len(shapes)


def test_carriage_clacks_come_in_a_rhythm():
    a = audio.ambience("carriage", 8.0, seed=1)[:, 0].astype(np.float64)
    from scipy import signal

    hi = signal.sosfilt(signal.butter(2, [400, 3000], btype="bandpass", fs=SR, output="sos"), a)
    env = np.sqrt(np.convolve(hi**2, np.ones(480) / 480, mode="same"))[::480]  # 100 Hz envelope
    env = env - env.mean()
    ac = np.correlate(env, env, mode="full")[env.size - 1 :]
    lag = 100 + int(np.argmax(ac[100:160]))  # the rail-joint period lies in 1.0..1.6 s
    assert ac[lag] > 0.3 * ac[0]


def test_unknown_ambience_names_the_name_and_the_choices():
    with pytest.raises(ValueError, match=r"'subway'.*carriage.*platform.*rain.*room"):
        audio.ambience("subway", 1.0)


def test_zero_length_ambience():
    assert audio.ambience("room", 0.0).shape == (0, 2)


# --- fades, crossfades, WAV -----------------------------------------------


def test_fade_starts_and_ends_at_zero():
    y = audio.fade(np.ones((SR, 2)), SR, 0.01, 0.02)
    assert y[0].max() == 0.0 and y[-1].max() < 1e-3
    assert y[SR // 2].min() == 1.0


def test_equal_power_crossfade_keeps_power_of_uncorrelated_sources():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((SR, 2)), rng.standard_normal((SR, 2))
    y = audio.crossfade(a, b, 0.5, SR)
    assert y.shape == (SR + SR // 2, 2)
    mid = y[SR // 2 : SR]
    assert np.mean(mid**2) == pytest.approx(1.0, rel=0.05)
    g_out, g_in = audio.equal_power_ramps(1000)
    np.testing.assert_allclose(g_out**2 + g_in**2, 1.0)


def test_wav_is_16_bit_stereo_and_round_trips(tmp_path):
    x = audio.ambience("rain", 0.5, seed=2)
    p = audio.write_wav(tmp_path / "r.wav", x, SR)
    with wave.open(str(p)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, SR, x.shape[0])
    y, sr = audio.read_wav(p)
    assert sr == SR
    np.testing.assert_allclose(y, x, atol=1 / 32767)
    audio.write_wav(tmp_path / "m.wav", np.zeros(100), SR)
    assert audio.read_wav(tmp_path / "m.wav")[0].shape == (100, 2)
