"""R-peak detection validated on MIT-BIH and on the simulator's truth; RR artefacts."""

import numpy as np
import pytest
import xarray as xr

from cardiolab.errors import SignalQualityError
from cardiolab.io import BEAT_SYMBOLS
from cardiolab.signals import classify_rr, detect_r_peaks
from cardiolab.signals.quality import score_detections

MITDB = ["100", "102", "103", "104", "105", "106", "107", "108", "118", "208"]


def test_mitdb_sensitivity_and_positive_predictivity(shared_data):
    """EC57 practice: beat annotations as truth (non-beat annotations excluded), 150 ms
    match window; aggregate Se and +P >= 99.5 % over the 10 annotated records."""
    from cardiolab import io

    total = None
    per_record = {}
    for rec in MITDB:
        path = shared_data / "mitdb" / rec
        import wfdb

        name = wfdb.rdheader(str(path)).sig_name[0]
        node = io.read_wfdb(path, {name: {"group": "ecg"}})
        ecg = node["ecg"].ds["ecg"]
        ann = io.read_wfdb_annotations(path, "atr")
        ref = ann.loc[ann["symbol"].isin(io.BEAT_SYMBOLS), "sample"].to_numpy()
        det = detect_r_peaks(ecg.values, 360.0)
        score = score_detections(ref, det, int(0.15 * 360))
        per_record[rec] = score
        total = score if total is None else total + score
    assert total.sensitivity >= 0.995, per_record
    assert total.positive_predictivity >= 0.995, per_record
    # no single record collapses
    assert min(s.sensitivity for s in per_record.values()) > 0.98


#: Fiducial accuracy of the previous detector (commit 07ed33e: R-peak at the largest
#: deflection of a 20 ms low-pass / 200 ms high-pass ECG, refined on the raw ECG), per
#: record: (95th percentile of |detected - annotated| in samples at 360 Hz, median of
#: detected - annotated, % of beats more than 10 samples = 28 ms away), matched beats
#: only (150 ms). Measured with that commit on lead 0 (2026-11). This branch measured
#: the same 95th percentiles within 1 sample (106: 1.15, 108: 15) and the same medians,
#: and at most 0.5 points more beats beyond 28 ms (108: 16.4 %); the detector of
#: 6e4a922, which placed R-peaks on its 40 ms / 120 ms detection band, gave 18, 38, 14
#: and 17 on 102, 104, 118 and 208 (19.9 % of 104's beats beyond 28 ms).
FIDUCIAL_PREVIOUS = {
    "100": (1.0, 1, 0.00),
    "102": (1.0, -1, 2.01),  # paced
    "103": (1.0, 1, 0.00),
    "104": (3.0, -2, 1.66),  # paced, fusion beats
    "105": (1.0, 0, 0.55),
    "106": (1.9, 0, 1.73),  # PVCs, bigeminy
    "107": (4.0, -3, 0.71),  # paced
    "108": (14.0, 1, 15.95),  # large P waves; the annotations sit on either lobe
    "118": (3.0, 2, 0.35),
    "208": (5.0, 1, 2.48),  # 992 PVCs
}


@pytest.mark.parametrize("record", MITDB)
def test_r_peaks_sit_on_the_annotated_fiducial_point(shared_data, record):
    """Placement, not only detection: on paced and wide-complex beats too, the R-peak
    is where the annotators put the beat (MIT-BIH fiducial marks), as close as the
    previous detector put it. Tolerances: the 95th percentile of |offset| at most 2
    samples (5.6 ms) above the previous detector's, the median within 1 sample of its
    median, at most 1 point more beats beyond 10 samples (28 ms)."""
    import wfdb

    path = str(shared_data / "mitdb" / record)
    ecg = wfdb.rdrecord(path, channels=[0]).p_signal[:, 0]
    ann = wfdb.rdann(path, "atr")
    ref = np.array([s for s, c in zip(ann.sample, ann.symbol, strict=True) if c in BEAT_SYMBOLS])
    det = detect_r_peaks(ecg, 360.0)
    k = np.clip(np.searchsorted(ref, det), 1, ref.size - 1)
    before, after = det - ref[k - 1], det - ref[k]
    offset = np.where(np.abs(before) < np.abs(after), before, after)
    offset = offset[np.abs(offset) <= int(0.15 * 360)]
    assert offset.size >= 0.98 * ref.size
    p95, median, beyond = FIDUCIAL_PREVIOUS[record]
    assert np.percentile(np.abs(offset), 95) <= p95 + 2, np.percentile(offset, [1, 5, 50, 95, 99])
    assert abs(np.median(offset) - median) <= 1
    assert 100 * np.mean(np.abs(offset) > 10) <= beyond + 1.0


#: 95th percentile of |detected - annotated| (ms) of the previous detector (07ed33e) on
#: MIT-BIH 102 and 104 resampled to other rates (measured 2026-11); this branch measured
#: 6, 4, 4 ms (102) and 10, 9, 8 ms (104) at 500, 1000, 250 Hz. With the search only
#: +-75 ms around the energy peak, 104 gave 88 ms at 500 Hz and 86 ms at 1000 Hz.
FIDUCIAL_PREVIOUS_MS = {
    ("102", 500): 4.0,
    ("102", 1000): 4.0,
    ("102", 250): 4.0,
    ("104", 500): 8.0,
    ("104", 1000): 8.0,
    ("104", 250): 8.0,
}


@pytest.mark.parametrize(("record", "fs"), sorted(FIDUCIAL_PREVIOUS_MS))
def test_fiducial_point_at_other_sampling_rates(shared_data, record, fs):
    """The paced records resampled (scipy ``resample_poly``, annotations scaled): the
    R-peaks stay on the fiducial points at 250, 500 and 1000 Hz, where the detection
    runs at another reduced rate (``fs // detection_rate_hz``). Tolerance: the 95th
    percentile of |offset| at most 2 samples above the previous detector's."""
    import wfdb
    from scipy.signal import resample_poly

    path = str(shared_data / "mitdb" / record)
    ecg = wfdb.rdrecord(path, channels=[0]).p_signal[:, 0]
    ann = wfdb.rdann(path, "atr")
    ref = np.array([s for s, c in zip(ann.sample, ann.symbol, strict=True) if c in BEAT_SYMBOLS])
    ecg = resample_poly(ecg, fs // 10, 36)
    ref = np.round(ref * fs / 360).astype(np.int64)
    det = detect_r_peaks(ecg, float(fs))
    k = np.clip(np.searchsorted(ref, det), 1, ref.size - 1)
    before, after = det - ref[k - 1], det - ref[k]
    offset = np.where(np.abs(before) < np.abs(after), before, after)
    offset = offset[np.abs(offset) <= 0.15 * fs]
    assert offset.size >= 0.98 * ref.size
    p95_ms = 1000 * np.percentile(np.abs(offset), 95) / fs
    assert p95_ms <= FIDUCIAL_PREVIOUS_MS[(record, fs)] + 2000 / fs, p95_ms


def test_simulated_campaign_against_truth(small_campaign):
    """Se and +P >= 99.8 % against the simulator's R-peaks (beats in ECG dropouts and
    motion artefacts excluded, as the truth flags them); located within 4 ms."""
    path, truth = small_campaign
    tree = xr.open_datatree(path / "campaign.zarr", engine="zarr")
    total = None
    offsets = []
    for subject in tree.children:
        for session, node in tree[subject].children.items():
            ecg = node["ecg"].ds
            fs = ecg.attrs["sampling_rate"]
            det = detect_r_peaks(ecg["ecg"].values, fs)
            beats = truth.beats(subject, session)
            valid = beats["ecg_valid"].values
            ref = beats["r_sample"].values[valid]
            # beats inside ECG dropouts or motion artefacts (flagged by the truth) are
            # not scored, nor are detections next to them
            excluded = beats["r_sample"].values[~valid]
            if excluded.size:
                gap = np.min(np.abs(det[:, None] - excluded[None, :]), axis=1)
                det = det[gap > int(0.15 * fs)]
            s = score_detections(ref, det, int(0.15 * fs))
            total = s if total is None else total + s
            k = np.clip(np.searchsorted(det, ref), 1, det.size - 1)
            near = np.where(np.abs(det[k - 1] - ref) < np.abs(det[k] - ref), det[k - 1], det[k])
            offsets.append(near - ref)
    off = np.abs(np.concatenate(offsets))
    assert total.sensitivity >= 0.998, total
    assert total.positive_predictivity >= 0.998, total
    assert np.mean(off <= 2) >= 0.99  # 2 samples = 4 ms at 500 Hz


def test_polarity_and_dataarray_input():
    fs = 250.0
    t = np.arange(int(60 * fs)) / fs
    beats = np.arange(0.4, 59.5, 0.8)
    ecg = sum(np.exp(-0.5 * ((t - b) / 0.012) ** 2) for b in beats)
    ecg = (
        ecg
        + 0.05 * np.sin(2 * np.pi * 0.3 * t)
        + 0.01 * np.random.default_rng(0).normal(size=t.size)
    )
    for sign in (1, -1):
        da = xr.DataArray(sign * ecg, dims="time", attrs={"sampling_rate": fs})
        det = detect_r_peaks(da)
        s = score_detections(np.rint(beats * fs).astype(int), det, 5)
        assert s.sensitivity == 1.0 and s.positive_predictivity == 1.0


def test_nan_dropout_and_short_input():
    fs = 360.0
    t = np.arange(int(20 * fs)) / fs
    ecg = sum(np.exp(-0.5 * ((t - b) / 0.01) ** 2) for b in np.arange(0.5, 19.5, 1.0))
    ecg[int(5 * fs) : int(8 * fs)] = np.nan
    det = detect_r_peaks(ecg, fs)
    assert not np.any((det > 5 * fs) & (det < 8 * fs))
    assert len(det) >= 15
    with pytest.raises(SignalQualityError, match="too short"):
        detect_r_peaks(ecg[:100], fs)


def test_score_detections():
    s = score_detections([100, 200, 300], [101, 205, 260, 400], tolerance=10)
    assert (s.true_positives, s.false_negatives, s.false_positives) == (2, 1, 2)


def test_classify_rr_flags_ectopic_missed_and_extra():
    rng = np.random.default_rng(1)
    rr = 800 + 20 * np.sin(np.arange(300) / 5) + rng.normal(0, 5, 300)
    rr[50] = 500  # premature beat ...
    rr[51] = 1100  # ... with compensatory pause: ectopic pattern
    rr[150] = 1600  # a missed beat (two intervals in one)
    rr[250] = 400  # an extra beat splits an interval
    rr[251] = 400
    out = classify_rr(rr)
    # the premature interval and its compensatory pause are both flagged, one ectopic
    assert 1 in out["flag"].iloc[50:52].tolist() and (out["flag"].iloc[50:52] != 0).all()
    assert out["flag"].iloc[150] == 4
    assert out["flag"].iloc[250] in (3, 5)
    normal = np.r_[0:45, 60:145, 155:245, 260:300]
    assert (out["flag"].iloc[normal] == 0).mean() > 0.98
    np.testing.assert_allclose(out["rr_corrected"].iloc[150], 800, atol=60)
    np.testing.assert_array_equal(out["rr"], rr)  # raw kept
