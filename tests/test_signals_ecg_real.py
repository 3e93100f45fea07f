"""R-peak detection on real recordings: threshold state after flat, NaN and saturated
stretches, leading gaps, noise (MIT-BIH Noise Stress Test against NeuroKit2), and T
waves (a BIOPAC ECG).

The right values come from ``../shared/data/real_world/README.md`` and from the
expert annotations of the PhysioNet records.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardiolab.io import BEAT_SYMBOLS
from cardiolab.signals import detect_r_peaks
from cardiolab.signals.quality import score_detections

FS_E0103 = 250.0


def _matched(a, b, tolerance):
    """Beats of ``a`` and ``b`` paired within ``tolerance`` samples (score of b vs a)."""
    return score_detections(np.asarray(a), np.asarray(b), tolerance)


@pytest.fixture(scope="module")
def e0103(shared_data):
    x = np.loadtxt(shared_data / "real_world" / "e0103.csv")
    return x, detect_r_peaks(x, FS_E0103)


@pytest.fixture(scope="module")
def a103l(shared_data):
    import wfdb

    return wfdb.rdrecord(str(shared_data / "real_world" / "a103l"))


def test_e0103_alone_gives_120_beats(e0103):
    x, beats = e0103
    assert x.size == 30_000
    assert beats.size == 120
    rr = np.diff(beats) / FS_E0103
    assert 0.8 < np.median(rr) < 1.3  # a plausible resting rhythm, no doubled beats
    assert rr.min() > 0.5


@pytest.mark.parametrize("seconds", [3, 10])
@pytest.mark.parametrize("fill", [0.0, np.nan])
def test_e0103_after_a_flat_or_nan_start(e0103, seconds, fill):
    """Electrodes not yet on (zeros) or lead off (NaN) before the record: the same 120
    beats, shifted, matched within 2 samples (8 ms)."""
    x, beats = e0103
    lead_in = int(seconds * FS_E0103)
    det = detect_r_peaks(np.r_[np.full(lead_in, fill), x], FS_E0103)
    s = _matched(beats, det - lead_in, 2)
    assert (s.true_positives, s.false_negatives, s.false_positives) == (120, 0, 0)


@pytest.mark.parametrize("fill", [0.0, np.nan])
def test_e0103_with_a_30_s_flat_stretch_inserted(e0103, fill):
    x, beats = e0103
    at, gap = int(60 * FS_E0103), int(30 * FS_E0103)
    y = np.r_[x[:at], np.full(gap, fill), x[at:]]
    det = detect_r_peaks(y, FS_E0103)
    assert not np.any((det >= at) & (det < at + gap))
    det = np.where(det >= at + gap, det - gap, det)
    s = _matched(beats, det, 2)
    assert s.true_positives == 120
    assert s.false_negatives == 0
    assert s.false_positives <= 1  # at most one beat-like edge where the signal resumes


def test_multi_segment_record_with_a_leading_gap(e0103, tmp_path):
    """A WFDB multi-segment record whose first segment is a 10-s gap (read as NaN by
    wfdb) gives the beats of the ECG segment."""
    import wfdb

    x, beats = e0103
    gap = int(10 * FS_E0103)
    wfdb.wrsamp(
        "e0103_1",
        fs=FS_E0103,
        units=["mV"],
        sig_name=["ECG"],
        p_signal=x[:, None],
        fmt=["16"],
        adc_gain=[200.0],
        baseline=[0],
        write_dir=str(tmp_path),
    )
    (tmp_path / "e0103m_layout.hea").write_text(
        "e0103m_layout 1 250 0\n~ 0 200/mV 16 0 0 0 0 ECG\n"
    )
    (tmp_path / "e0103m.hea").write_text(
        f"e0103m/3 1 250 {gap + x.size}\ne0103m_layout 0\n~ {gap}\ne0103_1 {x.size}\n"
    )
    rec = wfdb.rdrecord(str(tmp_path / "e0103m"))
    ecg = rec.p_signal[:, 0]
    assert np.isnan(ecg[:gap]).all()
    det = detect_r_peaks(ecg, rec.fs)
    s = _matched(beats, det - gap, 2)
    assert (s.true_positives, s.false_negatives, s.false_positives) == (120, 0, 0)


def test_a103l_lead_v_recovers_after_saturating_bursts(a103l):
    """Lead V has 2-3 mV artefact bursts from about 262 to 303 s: detection resumes
    within a few seconds (README: about 85 beats in 290-330 s, 53 in the 305-330 s
    excerpt alone), and agrees with lead II where both are clean."""
    fs = a103l.fs
    names = list(a103l.sig_name)
    v = a103l.p_signal[:, names.index("V")]
    ii = a103l.p_signal[:, names.index("II")]
    t_v = detect_r_peaks(v, fs) / fs
    t_ii = detect_r_peaks(ii, fs) / fs
    assert 80 <= np.count_nonzero((t_v >= 290) & (t_v < 330)) <= 90
    excerpt = detect_r_peaks(v[int(305 * fs) : int(330 * fs)], fs)
    assert abs(excerpt.size - 53) <= 1
    # after the last burst (~303 s) the two leads give the same beats within 60 ms
    a = t_ii[(t_ii >= 306) & (t_ii < 330)]
    b = t_v[(t_v >= 306) & (t_v < 330)]
    s = score_detections(np.round(a * fs), np.round(b * fs), int(0.06 * fs))
    assert s.sensitivity >= 0.98 and s.positive_predictivity >= 0.98, s
    # the whole 290-330 s window: lead V finds most of lead II's beats
    a = t_ii[(t_ii >= 290) & (t_ii < 330)]
    b = t_v[(t_v >= 290) & (t_v < 330)]
    assert score_detections(np.round(a * fs), np.round(b * fs), int(0.06 * fs)).sensitivity > 0.85


def test_a103l_lead_ii_rate_matches_the_pulse_oximeter(a103l):
    """Sanity check on lead II: where the PLETH is clean (320-330 s) the heart rate of
    the ECG beats and of the PLETH pulses (scipy peaks at least 0.3 s apart, prominence
    0.3 of the 5-95 % range) agree within 3 bpm, and lead II counts as many beats as
    lead V over 290-330 s (+-5)."""
    from scipy.signal import find_peaks

    fs = a103l.fs
    names = list(a103l.sig_name)
    ii = detect_r_peaks(a103l.p_signal[:, names.index("II")], fs) / fs
    window = ii[(ii >= 320) & (ii < 330)]
    pleth = a103l.p_signal[int(320 * fs) : int(330 * fs), names.index("PLETH")]
    spread = np.percentile(pleth, 95) - np.percentile(pleth, 5)
    pulses, _ = find_peaks(pleth, distance=int(0.3 * fs), prominence=0.3 * spread)
    hr_ecg = 60.0 / np.median(np.diff(window))
    hr_pleth = 60.0 / np.median(np.diff(pulses) / fs)
    assert 110 < hr_ecg < 140
    assert abs(hr_ecg - hr_pleth) < 3.0, (hr_ecg, hr_pleth)
    v = detect_r_peaks(a103l.p_signal[:, names.index("V")], fs) / fs
    n_ii = np.count_nonzero((ii >= 290) & (ii < 330))
    n_v = np.count_nonzero((v >= 290) & (v < 330))
    assert abs(n_ii - n_v) <= 5, (n_ii, n_v)


@pytest.fixture(scope="module")
def mitdb_100(shared_data):
    import wfdb

    path = str(shared_data / "mitdb" / "100")
    rec = wfdb.rdrecord(path, channels=[0], sampto=360 * 180)
    ecg = rec.p_signal[:, 0]
    return ecg, rec.fs, detect_r_peaks(ecg, rec.fs)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.floats(0.0, 120.0),
    length=st.floats(3.0, 30.0),
    amplitude=st.floats(2.0, 8.0),
    seed=st.integers(0, 2**16),
)
def test_beats_after_a_saturating_burst_are_all_found(mitdb_100, start, length, amplitude, seed):
    """A burst of giant, clipped artefact (``amplitude`` mV, rail-to-rail jumps and
    plateaus) inserted into 3 min of MIT-BIH 100: every beat from 4 s after the burst
    on is found where it was found without the burst."""
    ecg, fs, clean = mitdb_100
    rng = np.random.default_rng(seed)
    a, n = int(start * fs), int(length * fs)
    burst = np.cumsum(rng.normal(0.0, amplitude / 4, n)) + rng.normal(0.0, amplitude / 3, n)
    burst = np.clip(burst, -amplitude / 2, amplitude / 2)
    y = ecg.copy()
    y[a : a + n] += burst
    det = detect_r_peaks(y, fs)
    after = a + n + int(4 * fs)
    ref = clean[clean >= after]
    got = det[det >= after]
    s = score_detections(ref, got, 2)
    assert s.false_negatives == 0 and s.false_positives == 0, (s, start, length)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["zero", "nan", "offset", "rail"]),
    where=st.sampled_from(["start", "middle"]),
    length=st.floats(3.0, 40.0),
)
def test_beats_after_a_flat_or_nan_stretch_are_all_found(mitdb_100, kind, where, length):
    """A flat stretch (zeros, NaN, a constant offset, or the signal held at a clipping
    rail) at the start or in the middle: all beats outside it are found (from 2 s after
    it), where they were found without it."""
    ecg, fs, clean = mitdb_100
    n = int(length * fs)
    fill = {"zero": 0.0, "nan": np.nan, "offset": 1.7, "rail": 5.0}[kind]
    at = 0 if where == "start" else int(60 * fs)
    y = np.r_[ecg[:at], np.full(n, fill), ecg[at:]]
    det = detect_r_peaks(y, fs)
    assert not np.any((det >= at) & (det < at + n))
    det = np.where(det >= at + n, det - n, det)
    keep = (clean < at - fs) | (clean >= at + 2 * fs)
    got = det[(det < at - fs) | (det >= at + 2 * fs)]
    s = score_detections(clean[keep], got, 2)
    assert s.false_negatives == 0 and s.false_positives == 0, (s, kind, where, length)


NSTDB = ["118e24", "118e12", "118e00"]


@pytest.mark.parametrize("record", NSTDB)
def test_noise_stress_at_or_above_neurokit2(shared_data, record):
    """MIT-BIH Noise Stress Test (118 with electrode-motion noise at 24, 12 and 0 dB
    after the first 5 min): Se and +P (beat annotations, 150 ms window, EC57 practice)
    at or above NeuroKit2's ``ecg_peaks`` (default method) on the same record."""
    import warnings

    import wfdb

    nk = pytest.importorskip("neurokit2")
    path = str(shared_data / "nstdb" / record)
    rec = wfdb.rdrecord(path, channels=[0])
    ann = wfdb.rdann(path, "atr")
    ref = np.array([s for s, c in zip(ann.sample, ann.symbol, strict=True) if c in BEAT_SYMBOLS])
    x, fs = rec.p_signal[:, 0], rec.fs
    tol = int(round(0.15 * fs))
    ours = score_detections(ref, detect_r_peaks(x, fs), tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = nk.ecg_peaks(x, sampling_rate=int(fs))
    theirs = score_detections(ref, np.asarray(info["ECG_R_Peaks"]), tol)
    assert ours.sensitivity >= theirs.sensitivity, (ours, theirs)
    assert ours.positive_predictivity >= theirs.positive_predictivity, (ours, theirs)


def test_supraventricular_record_at_128_hz(shared_data):
    """svdb/800 (128 Hz): Se and +P >= 99.5 %."""
    import wfdb

    path = str(shared_data / "svdb" / "800")
    rec = wfdb.rdrecord(path, channels=[0])
    ann = wfdb.rdann(path, "atr")
    ref = np.array([s for s, c in zip(ann.sample, ann.symbol, strict=True) if c in BEAT_SYMBOLS])
    s = score_detections(ref, detect_r_peaks(rec.p_signal[:, 0], rec.fs), int(0.15 * rec.fs))
    assert s.sensitivity >= 0.995 and s.positive_predictivity >= 0.995, s


@pytest.mark.parametrize("name", ["nojournal-4.1.0.acq", "physio-5.0.1-c.acq"])
def test_no_beats_on_the_t_waves_of_a_biopac_ecg(shared_data, name):
    """A real BIOPAC ECG (``acq/``, lead "EKG - ERS100C", 1000 Hz, 61.9 s; the same
    recording in both files) with narrow QRS complexes (Q and R within 30 ms) and deep
    inverted T waves with a steep return 0.2-0.25 s after each R wave. Counted by eye:
    68 complete QRS complexes from 0.95 s to 61.22 s (a mean rate of 66.7 bpm over
    their 67 intervals) and one cut by the record's start (its R wave ends at 12 ms);
    RR 0.78-1.09 s. Without the T-wave test the detector gave 81 beats, RR down to
    0.22 s (beats on T waves), and placed 3 small complexes on their T waves."""
    from cardiolab.io import read_acq

    ds = read_acq(shared_data / "acq" / name, {"EKG - ERS100C": {"group": "ecg"}})["ecg"].ds
    ecg = ds["ecg"]
    x = ecg.values
    fs = 1000.0
    beats = detect_r_peaks(ecg, fs)
    assert 68 <= beats.size <= 70  # 69 by eye, +-1
    rr = np.diff(beats) / fs
    assert rr.min() >= 0.3  # no beat on a T wave
    assert rr.max() < 1.2  # and none missed
    assert abs(60.0 / rr[1:].mean() - 66.7) < 1.0
    # each beat on its QRS: within 40 ms of the largest positive deflection (the R
    # wave) within +-250 ms; a beat on a T wave is 200-250 ms after it
    w, tol = int(0.25 * fs), int(0.04 * fs)
    r_wave = np.array([max(b - w, 0) + np.argmax(x[max(b - w, 0) : b + w]) for b in beats])
    assert np.abs(r_wave - beats).max() <= tol


@pytest.mark.parametrize("fill", [np.nan, 0.0, 2.5])
def test_an_all_dead_record_has_no_beats(fill):
    """A record that is all NaN or all flat gives no beat (no error, no false beat)."""
    assert detect_r_peaks(np.full(5000, fill), 250.0).size == 0
