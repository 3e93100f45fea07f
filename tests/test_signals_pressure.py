"""Arterial pressure beats against the simulator's truth, and edge cases."""

import numpy as np
import pytest

from cardiolab.signals.pressure import arterial_pressure_beats, beat_spans_overlap, flat_segments
from cardiolab.simulate.artefacts import overlaps

SESSIONS = [("S01", "L-30"), ("S01", "R+1"), ("S02", "L-30"), ("S02", "R+1")]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Two subjects, two 4-minute sessions each: raw tree and truth."""
    import xarray as xr

    from cardiolab.simulate import simulate_campaign

    path = tmp_path_factory.mktemp("s") / "c"
    truth = simulate_campaign(
        path,
        n_subjects=2,
        schedule=["L-30", "R+1"],
        duration_min=4,
        seed=3,
        workers=1,
        progress=False,
    )
    tree = xr.open_datatree(path / "campaign.zarr", engine="zarr")
    return tree, truth


@pytest.fixture(scope="module")
def pressure(campaign):
    """Per session: (truth beats, our pressure beats) from the TRUE R-peak times."""
    tree, truth = campaign
    out = {}
    for s, ses in SESSIONS:
        beats = truth.beats(s, ses)
        ds = tree[f"{s}/{ses}/abp"].ds
        abp = ds["abp"].values
        before = abp.copy()
        p = arterial_pressure_beats(abp, ds.attrs["sampling_rate"], beats["t"].values)
        np.testing.assert_array_equal(abp, before)  # input not mutated
        out[(s, ses)] = (beats, p)
    return out


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def test_pressure_columns_and_rows(pressure):
    for beats, p in pressure.values():
        assert list(p.columns) == [
            "onset", "t_systolic", "t_notch", "sbp", "dbp", "map", "pp", "valid",
        ]  # fmt: skip
        assert len(p) == beats.sizes["beat"]
        assert p["valid"].dtype == bool
        assert not p["valid"].iloc[-1]  # the last beat has no end
        assert p.attrs["units"]["sbp"] == "mmHg"


def test_pressure_accuracy_against_truth(pressure):
    err = {k: [] for k in ("sbp", "dbp", "map", "onset_lag")}
    flagged_valid = n_valid = 0
    for beats, p in pressure.values():
        truth_ok = beats["abp_valid"].values & np.isfinite(beats["sbp"].values)
        ours = p["valid"].to_numpy()
        flagged_valid += int((truth_ok & ~ours).sum())
        n_valid += int(truth_ok.sum())
        both = truth_ok & ours
        for k in ("sbp", "dbp", "map"):
            err[k].append(p[k].to_numpy()[both] - beats[k].values[both])
        err["onset_lag"].append(p["onset"].to_numpy()[both] - beats["pressure_onset"].values[both])
        # the systolic peak and the notch lie inside the beat, in order
        on, ts, tn = (p[k].to_numpy()[both] for k in ("onset", "t_systolic", "t_notch"))
        nxt = np.r_[p["onset"].to_numpy()[1:], np.nan][both]
        assert np.all((on < ts) & (ts < nxt))
        has_notch = np.isfinite(tn)
        assert has_notch.mean() > 0.95
        assert np.all((tn[has_notch] > ts[has_notch]) & (tn[has_notch] < nxt[has_notch]))
    err = {k: np.concatenate(v) for k, v in err.items()}
    assert _rms(err["sbp"]) < 2.0  # measured about 0.16 mmHg
    assert _rms(err["dbp"]) < 2.0  # about 0.17 mmHg
    assert _rms(err["map"]) < 2.0  # about 0.08 mmHg
    # the intersecting-tangents foot sits a little up the upstroke, consistently
    assert 0.0 < np.median(err["onset_lag"]) < 0.06
    assert np.std(err["onset_lag"]) < 0.01
    assert flagged_valid / n_valid < 0.05  # measured about 0.4 %


def test_physiocal_gaps_flagged(pressure):
    hit = caught = 0
    for beats, p in pressure.values():
        gaps = np.asarray(beats.attrs["physiocal_gaps"], dtype=float).reshape(-1, 2)
        assert gaps.shape[0] > 0
        feet = beats["pressure_onset"].values
        in_gap = overlaps(feet, np.r_[feet[1:], np.inf], gaps)
        hit += int(in_gap.sum())
        caught += int((in_gap & ~p["valid"].to_numpy()).sum())
    assert caught / hit >= 0.9  # measured 100 %


def test_flat_segments_find_physiocal(campaign):
    tree, truth = campaign
    beats = truth.beats("S01", "L-30")
    ds = tree["S01/L-30/abp"].ds
    segs = flat_segments(ds["abp"].values, ds.attrs["sampling_rate"])
    gaps = np.asarray(beats.attrs["physiocal_gaps"], dtype=float).reshape(-1, 2)
    found = beat_spans_overlap(gaps[:, 0], gaps[:, 1], segs)
    assert found.all()
    # each gap is matched by a segment with nearly the same limits
    k = np.searchsorted(segs[:, 1], gaps[:, 0])
    np.testing.assert_allclose(segs[k], gaps, atol=0.1)


# --- synthetic edge cases ------------------------------------------------------------


def _synthetic(n_beats=20, fs=200.0, rr=0.9, transit=0.25):
    """A simple pressure pulse train (mmHg) and its R-peak times (s)."""
    from cardiolab.simulate.waveforms import pulse_waveform

    r = 0.5 + rr * np.arange(n_beats)
    n = int((r[-1] + 2.0) * fs)
    feet = r + transit
    x = pulse_waveform(n, fs, feet, np.full(n_beats, 120.0), np.full(n_beats, 80.0), "pressure")
    return x, fs, r


def test_synthetic_clean_train():
    x, fs, r = _synthetic()
    p = arterial_pressure_beats(x, fs, r)
    ok = p["valid"].to_numpy()
    assert ok[1:-1].all() and not ok[-1]
    np.testing.assert_allclose(p["sbp"][1:-1], 120.0, atol=0.5)
    np.testing.assert_allclose(p["dbp"][1:-1], 80.0, atol=0.5)
    np.testing.assert_allclose(p["pp"], p["sbp"] - p["dbp"])


def test_empty_r_times():
    x, fs, _ = _synthetic()
    p = arterial_pressure_beats(x, fs, [])
    assert len(p) == 0 and "sbp" in p.columns


def test_single_beat():
    x, fs, r = _synthetic()
    p = arterial_pressure_beats(x, fs, r[:1])
    assert len(p) == 1
    assert np.isfinite(p["onset"][0]) and not p["valid"][0]  # no next onset: no end


def test_flat_signal_all_invalid():
    _, fs, r = _synthetic()
    p = arterial_pressure_beats(np.full(4000, 90.0), fs, r)
    assert len(p) == r.size and not p["valid"].any()
    segs = flat_segments(np.full(4000, 90.0), fs)
    np.testing.assert_allclose(segs, [[0.0, 20.0]])


def test_nans_flag_beats_without_crash():
    x, fs, r = _synthetic()
    x = x.copy()
    x[int(5.0 * fs) : int(5.3 * fs)] = np.nan
    before = x.copy()
    p = arterial_pressure_beats(x, fs, r)
    np.testing.assert_array_equal(x, before)
    hit = (p["onset"] < 5.3) & (np.r_[p["onset"][1:], np.inf] > 5.0)
    assert hit.any()
    assert not p["valid"][hit].any()
    assert p["sbp"][hit].isna().all()
    assert p["valid"][~hit].sum() >= r.size - 4
    all_nan = arterial_pressure_beats(np.full(x.size, np.nan), fs, r)
    assert not all_nan["valid"].any()


def test_dropout_and_out_of_range_flagged():
    x, fs, r = _synthetic(n_beats=30)
    x = x.copy()
    i0, i1 = int(8.0 * fs), int(11.0 * fs)
    x[i0:i1] = x[i0 - 1]  # held value
    p = arterial_pressure_beats(x, fs, r)
    hit = (p["onset"] < 11.0) & (np.r_[p["onset"][1:], np.inf] > 8.0)
    assert not p["valid"][hit | p["onset"].isna()].any()
    low = arterial_pressure_beats(x * 0.05, fs, r)  # pulse pressure 2 mmHg
    assert not low["valid"].any()
