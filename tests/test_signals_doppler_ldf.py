"""Doppler and LDF beats against the simulator's truth, and edge cases."""

import numpy as np
import pytest

from cardiolab.signals.doppler import doppler_beats
from cardiolab.signals.ldf import cutaneous_vascular_conductance, ldf_beats, ldf_spikes
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


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def _truth_ok(beats, group):
    """Beats the simulator's artefacts leave clean for ``group`` (motion, dropouts)."""
    r = beats["t"].values
    bad = np.r_[beats.attrs["motion_artefacts"], beats.attrs[f"dropouts_{group}"]]
    return ~overlaps(r - 0.1, np.r_[r[1:], np.inf] + 0.3, np.reshape(bad, (-1, 2)))


@pytest.mark.parametrize("vessel", ["femoral", "mca"])
def test_doppler_accuracy_against_truth(campaign, vessel):
    tree, truth = campaign
    rel = {k: [] for k in ("psv", "tamv", "pi")}
    ri = []
    flagged = n_ok = 0
    for s, ses in SESSIONS:
        beats = truth.beats(s, ses)
        ds = tree[f"{s}/{ses}/doppler"].ds
        v = ds["velocity"].sel(vessel=vessel).values
        before = v.copy()
        d = doppler_beats(v, ds.attrs["sampling_rate"], beats["t"].values)
        np.testing.assert_array_equal(v, before)
        assert list(d.columns) == ["onset", "psv", "edv", "tamv", "ri", "pi", "valid"]
        assert len(d) == beats.sizes["beat"]
        ok = _truth_ok(beats, "doppler") & np.isfinite(beats[f"{vessel}_psv"].values)
        ours = d["valid"].to_numpy()
        flagged += int((ok & ~ours).sum())
        n_ok += int(ok.sum())
        both = ok & ours
        for k in rel:
            rel[k].append(d[k].to_numpy()[both] / beats[f"{vessel}_{k}"].values[both] - 1.0)
        ri.append(d["ri"].to_numpy()[both] - beats[f"{vessel}_ri"].values[both])
    rel = {k: np.concatenate(v) for k, v in rel.items()}
    assert _rms(rel["psv"]) < 0.03  # measured about 1.8 %
    assert _rms(rel["tamv"]) < 0.03  # femoral about 2.0 % (noise-limited), MCA 0.5 %
    assert _rms(rel["pi"]) < 0.05  # about 2.7 %
    assert _rms(np.concatenate(ri)) < 0.02  # about 0.011
    assert flagged / n_ok < 0.05  # measured 0


def test_femoral_is_high_resistance(campaign):
    tree, truth = campaign
    ds = tree["S01/L-30/doppler"].ds
    r = truth.beats("S01", "L-30")["t"].values
    fem = doppler_beats(ds["velocity"].sel(vessel="femoral").values, 100.0, r)
    mca = doppler_beats(ds["velocity"].sel(vessel="mca").values, 100.0, r)
    assert fem.loc[fem["valid"], "ri"].median() > mca.loc[mca["valid"], "ri"].median() + 0.2
    # TAMV is the true time average, not the PSV/3 + 2 EDV/3 shortcut
    shortcut = fem["psv"] / 3 + 2 * fem["edv"] / 3
    assert (fem.loc[fem["valid"], "tamv"] < shortcut[fem["valid"]] - 5.0).all()


def test_ldf_accuracy_against_truth(campaign):
    tree, truth = campaign
    err = []
    flagged = n_ok = 0
    for s, ses in SESSIONS:
        beats = truth.beats(s, ses)
        ds = tree[f"{s}/{ses}/ldf"].ds
        lb = ldf_beats(ds["flux"].values, ds.attrs["sampling_rate"], beats["t"].values)
        assert list(lb.columns) == ["flux", "valid"] and len(lb) == beats.sizes["beat"]
        ok = _truth_ok(beats, "ldf") & np.isfinite(beats["flux"].values)
        ours = lb["valid"].to_numpy()
        flagged += int((ok & ~ours).sum())
        n_ok += int(ok.sum())
        both = ok & ours
        err.append(lb["flux"].to_numpy()[both] - beats["flux"].values[both])
    assert _rms(np.concatenate(err)) < 0.5  # measured about 0.05 PU
    assert flagged / n_ok < 0.05  # about 0.8 % (isolated 6-MAD outliers)


def test_ldf_motion_flagged(campaign):
    tree, truth = campaign
    beats = truth.beats("S01", "R+1")
    motion = np.reshape(beats.attrs["motion_artefacts"], (-1, 2))
    assert motion.shape[0] == 1
    ds = tree["S01/R+1/ldf"].ds
    lb = ldf_beats(ds["flux"].values, ds.attrs["sampling_rate"], beats["t"].values)
    r = beats["t"].values
    hit = overlaps(r, np.r_[r[1:], np.inf], motion)
    assert (~lb["valid"].to_numpy()[hit]).mean() >= 0.5


# --- synthetic edge cases ------------------------------------------------------------


def _velocity(kind="femoral", n_beats=20, fs=100.0, rr=0.9, transit=0.17):
    from cardiolab.simulate.waveforms import pulse_waveform

    r = 0.5 + rr * np.arange(n_beats)
    n = int((r[-1] + 2.0) * fs)
    edv = 2.0 if kind == "femoral" else 30.0
    x = pulse_waveform(n, fs, r + transit, np.full(n_beats, 80.0), np.full(n_beats, edv), kind)
    return x, fs, r


@pytest.mark.parametrize("kind", ["femoral", "mca"])
def test_doppler_synthetic_clean(kind):
    x, fs, r = _velocity(kind)
    d = doppler_beats(x, fs, r)
    inner = d.iloc[1:-1]
    assert inner["valid"].all() and not d["valid"].iloc[-1]
    np.testing.assert_allclose(inner["psv"], 80.0, rtol=0.01)
    edv = 2.0 if kind == "femoral" else 30.0
    np.testing.assert_allclose(inner["edv"], edv, atol=1.0)
    np.testing.assert_allclose(inner["ri"], (inner["psv"] - inner["edv"]) / inner["psv"])
    np.testing.assert_allclose(inner["pi"], (inner["psv"] - inner["edv"]) / inner["tamv"])


def test_doppler_edge_cases():
    x, fs, r = _velocity()
    assert len(doppler_beats(x, fs, [])) == 0
    one = doppler_beats(x, fs, r[:1])
    assert len(one) == 1 and not one["valid"][0]
    flat = doppler_beats(np.full(x.size, 12.0), fs, r)
    assert len(flat) == r.size and not flat["valid"].any()
    y = x.copy()
    y[500:530] = np.nan
    d = doppler_beats(y, fs, r)
    hit = overlaps(r, np.r_[r[1:], np.inf] + 0.17, [(5.0, 5.3)])  # beats 4 and 5
    assert hit.sum() == 2 and not d["valid"][hit].any() and d["psv"][hit].isna().all()
    assert d["valid"].sum() >= r.size - 4
    held = x.copy()
    held[600:900] = held[599]
    dh = doppler_beats(held, fs, r)
    hit = (dh["onset"] < 9.0) & (np.r_[dh["onset"][1:], np.inf] > 6.0)
    assert not dh["valid"][hit | dh["onset"].isna()].any()


def test_ldf_edge_cases():
    fs = 32.0
    rng = np.random.default_rng(0)
    r = 0.5 + 0.9 * np.arange(40)
    flux = 10.0 + rng.normal(0.0, 0.25, int(40 * fs))
    before = flux.copy()
    lb = ldf_beats(flux, fs, r)
    np.testing.assert_array_equal(flux, before)
    assert lb["valid"].iloc[:-1].mean() > 0.9 and not lb["valid"].iloc[-1]
    np.testing.assert_allclose(lb["flux"].iloc[:-1], 10.0, atol=0.3)
    assert len(ldf_beats(flux, fs, [])) == 0
    assert len(ldf_beats(flux, fs, r[:1])) == 1
    flat = ldf_beats(np.zeros_like(flux), fs, r)  # clipped at 0: a dropout
    assert not flat["valid"].any()
    spiky = flux.copy()
    spiky[320:324] += [15.0, -9.0, 14.0, -8.0]  # 10.0-10.1 s
    assert ldf_spikes(spiky, fs)[320:324].all()
    k = np.searchsorted(r, 10.0) - 1
    assert not ldf_beats(spiky, fs, r)["valid"][k]
    nan = flux.copy()
    nan[320:330] = np.nan
    ln = ldf_beats(nan, fs, r)
    assert not ln["valid"][k] and np.isnan(ln["flux"][k])


def test_cvc():
    cvc = cutaneous_vascular_conductance([10.0, 10.0, 10.0, np.nan], [100.0, np.nan, 50.0, 90.0])
    np.testing.assert_allclose(cvc, [0.1, np.nan, 0.2, np.nan])
    masked = cutaneous_vascular_conductance([10.0, 10.0], [100.0, 100.0], valid=[True, False])
    np.testing.assert_allclose(masked, [0.1, np.nan])
