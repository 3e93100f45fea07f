"""The built-in features, declared (see :mod:`cardiolab.features.registry`).

Each declaration wraps a compute function of :mod:`.hrv`, :mod:`.brs`,
:mod:`.hemodynamics`, :mod:`.microcirculation` or :mod:`.cerebral` (NumPy in, dict
out): it says what the function reads from an epoch, what it returns with units, and
its parameters with the source of each default. The order of the declarations is the
order of computation (a feature may use the outputs of earlier ones).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import SignalQualityError
from .bpv import bpv_spectrum
from .brs import baroreflex_sequence, baroreflex_transfer
from .cerebral import CARNET_DEFAULTS, cerebral_autoregulation, mean_flow_index
from .hemodynamics import blood_pressure_features, doppler_features
from .hrv import HRV_BANDS, hrv_frequency, hrv_nonlinear, hrv_time
from .microcirculation import BAND_NAMES, LDF_BANDS, ldf_band_power
from .pulse_contour import MIN_BEATS, pulse_contour_reliable, stroke_volume_features
from .registry import ANY_UNITS, Output, Parameter, register_feature
from .respiration import (
    RESP_BAND,
    ecg_derived_respiration,
    hf_band_for_breathing,
    respiration_rate,
    rsa_amplitude,
)

TASK_FORCE = (
    "Task Force of the ESC and NASPE (1996). Heart rate variability: standards of "
    "measurement, physiological interpretation and clinical use. Circulation 93:1043-1065"
)
PARATI = (
    "Parati G, Di Rienzo M, Mancia G (2000). How to measure baroreflex sensitivity: from "
    "the cardiovascular laboratory to daily life. J Hypertens 18:7-19; Bertinieri G et al. "
    "(1988) J Hypertens 6(Suppl 4):S79-S81"
)
ROBBE = (
    "Robbe HW et al. (1987). Assessment of baroreceptor reflex sensitivity by means of "
    "spectral analysis. Hypertension 10:538-543; Laude D et al. (2004) EuroBaVar, Am J "
    "Physiol 286:R226-R231"
)
STEFANOVSKA = (
    "Stefanovska A, Bracic M, Kvernmo HD (1999). Wavelet analysis of oscillations in the "
    "peripheral blood circulation measured by laser Doppler technique. IEEE Trans Biomed "
    "Eng 46:1230-1239; Kvandal P et al. (2006) Microvasc Res 72:120-127"
)
CLAASSEN = (
    "Claassen JAHR et al. (2016). Transfer function analysis of dynamic cerebral "
    "autoregulation: a white paper from the International Cerebral Autoregulation Research "
    "Network. J Cereb Blood Flow Metab 36:665-680; CARNet tfa_car.m (Simpson 2015)"
)
WESSELING = (
    "Wesseling KH et al. (1983). A simple device for the continuous measurement of cardiac "
    "output. Adv Cardiovasc Phys 5:16-52; Langewouters GJ et al. (1984) J Biomech "
    "17:425-435 (aortic impedance from age and sex)"
)
CZOSNYKA = (
    "Czosnyka M et al. (1996). Monitoring of cerebral autoregulation in head-injured "
    "patients. Stroke 27:1829-1834"
)

#: vessel-name prefixes of cerebral arteries (insonated by transcranial Doppler)
CEREBRAL_VESSELS = ("mca", "aca", "pca", "ica", "cerebral", "basilar", "vertebral")


def is_cerebral(vessel: str) -> bool:
    """Whether a Doppler vessel name is a cerebral artery (prefix of :data:`CEREBRAL_VESSELS`)."""
    return str(vessel).lower().startswith(CEREBRAL_VESSELS)


@register_feature(
    "beat_counts",
    inputs={"t": "s"},
    outputs={
        "n_beats": Output("1", "number of valid beats (normal RR, trustworthy ECG)"),
        "n_beats_abp": Output(
            "1", "number of beats used for pressure and BRS (valid and abp_valid)"
        ),
        "n_beats_ldf": Output("1", "number of beats used for beat flux (valid and ldf_valid)"),
    },
    source="cardiolab beat table (valid = normal RR and trustworthy ECG; see ecg_valid)",
)
def _beat_counts(epoch):
    """Beats each group of features rests on."""
    return {
        "n_beats": epoch.count("valid"),
        "n_beats_abp": epoch.count("abp_valid"),
        "n_beats_ldf": epoch.count("ldf_valid"),
    }


@register_feature(
    "hrv_time",
    inputs={"rr": "ms"},
    outputs={
        "n_nn": Output("1", "number of NN intervals used (both bounding beats valid)"),
        "hr": Output("bpm", "heart rate (mean of 60000 / RR)"),
        "mean_nn": Output("ms", "mean NN interval"),
        "sdnn": Output("ms", "standard deviation of NN intervals"),
        "rmssd": Output("ms", "root mean square of successive NN differences"),
        "pnn50": Output("%", "NN differences > 50 ms, percent of NN intervals"),
    },
    source=TASK_FORCE,
)
def _hrv_time(epoch):
    """Time-domain HRV of the NN intervals."""
    return hrv_time(epoch["rr"])


GROSSMAN = (
    "Grossman P, van Beek J, Wientjes C (1990). A comparison of three quantification "
    "methods for estimation of respiratory sinus arrhythmia. Psychophysiology 27:702-714"
)
MOODY = (
    "Moody GB, Mark RG, Zoccola A, Mantero S (1985). Derivation of respiratory signals "
    "from multi-lead ECGs. Computers in Cardiology 12:113-116"
)
PARATI_BPV = (
    "Parati G, Saul JP, Di Rienzo M, Mancia G (1995). Spectral analysis of blood pressure "
    "and heart rate variability in evaluating cardiovascular regulation. Hypertension "
    "25:1276-1286"
)


@register_feature(
    "respiration",
    inputs={"resp": ANY_UNITS},
    outputs={
        "resp_rate": Output("breaths/min", "breathing rate (dominant spectral peak)"),
        "resp_rate_breaths": Output("breaths/min", "breathing rate (60 / mean breath duration)"),
        "n_breaths": Output("1", "number of complete breaths detected"),
        "rsa_p2t": Output("ms", "respiratory sinus arrhythmia, peak-to-trough mean"),
        "rsa_p2t_sd": Output("ms", "respiratory sinus arrhythmia, SD over breaths"),
    },
    parameters={
        "band": Parameter(RESP_BAND, "Hz", "band searched for the breathing peak", "Welch 1967"),
    },
    source=GROSSMAN + "; Khodadad D et al. (2018) Physiol Meas 39:115008 (breath detection)",
)
def _respiration(epoch, *, band):
    """Breathing rate and RSA from a respiration channel."""
    t, x, fs = epoch.signal("resp")
    reasons = []
    rate = respiration_rate(x, fs, band=tuple(band))
    out = {k: rate[k] for k in ("resp_rate", "resp_rate_breaths", "n_breaths")}
    if rate.get("reason"):
        reasons.append(rate["reason"])
    if "rr" in epoch.columns and t.size:
        rsa = rsa_amplitude(epoch["t"], epoch["rr"], x, fs, resp_t0=float(t[0]))
        out.update(rsa_p2t=rsa["rsa_p2t"], rsa_p2t_sd=rsa["rsa_p2t_sd"])
        if rsa.get("reason"):
            reasons.append(f"RSA: {rsa['reason']}")
    if reasons:
        out["reason"] = "; ".join(reasons)
    return out


@register_feature(
    "ecg_derived_respiration",
    inputs={"t": "s", "r_amplitude": "mV"},
    unless=("resp",),
    outputs={"edr_rate": Output("breaths/min", "ECG-derived breathing rate (R amplitude)")},
    source=MOODY,
)
def _ecg_derived_respiration(epoch):
    """Breathing rate from the R-wave amplitude modulation (no respiration channel)."""
    amp = np.where(epoch.mask("valid"), epoch["r_amplitude"], np.nan)
    edr = ecg_derived_respiration(epoch["t"], amp)
    if edr["edr"].size == 0:
        return {"reason": f"EDR: {edr['reason']}"}
    rate = respiration_rate(edr["edr"], edr["fs"])
    out = {"edr_rate": rate["resp_rate"]}
    if not np.isfinite(out["edr_rate"]) and rate.get("reason"):
        out["reason"] = f"EDR: {rate['reason']}"
    return out


_BANDS_SOURCE = "Task Force 1996 (VLF 0.0033-0.04, LF 0.04-0.15, HF 0.15-0.4 Hz)"


@register_feature(
    "hrv_frequency",
    inputs={"t": "s", "rr": "ms"},
    outputs={
        "vlf": Output("ms2", "HRV very-low-frequency power"),
        "lf": Output("ms2", "HRV low-frequency power"),
        "hf": Output("ms2", "HRV high-frequency power"),
        "total_power": Output("ms2", "HRV total power (VLF + LF + HF)"),
        "lf_hf": Output("1", "HRV LF/HF ratio"),
        "lf_nu": Output("n.u.", "HRV LF power in normalised units, 100 LF / (LF + HF)"),
        "hf_nu": Output("n.u.", "HRV HF power in normalised units, 100 HF / (LF + HF)"),
        "hf_lo": Output("Hz", "lower edge of the HF band used"),
        "hf_hi": Output("Hz", "upper edge of the HF band used"),
    },
    parameters={
        "vlf": Parameter(HRV_BANDS["vlf"], "Hz", "very-low-frequency band", _BANDS_SOURCE),
        "lf": Parameter(HRV_BANDS["lf"], "Hz", "low-frequency band", _BANDS_SOURCE),
        "hf": Parameter(HRV_BANDS["hf"], "Hz", "high-frequency band", _BANDS_SOURCE),
        "resample_hz": Parameter(
            4.0, "Hz", "tachogram resampling rate (quadratic interpolation)", TASK_FORCE
        ),
        "hf_follows_breathing": Parameter(
            True,
            "1",
            "centre HF on the measured breathing rate (resp channel, else ECG-derived) "
            "when it lies outside the HF band; LF then ends where HF begins",
            "Laborde S et al. (2017) Front Psychol 8:213; Quintana DS et al. (2016) "
            "Transl Psychiatry 6:e803",
        ),
    },
    uses=("resp_rate", "edr_rate"),
    source=TASK_FORCE + "; Welch PSD, Hann window of half the epoch, 50 % overlap",
)
def _hrv_frequency(epoch, *, vlf, lf, hf, resample_hz, hf_follows_breathing):
    """Frequency-domain HRV of the NN tachogram."""
    band = tuple(hf)
    if hf_follows_breathing:
        rate = epoch.results.get("resp_rate", epoch.results.get("edr_rate", np.nan))
        if rate is not None and np.isfinite(rate):
            band = hf_band_for_breathing(rate / 60.0, default=band)
    lf_band = tuple(lf)
    if band[0] < lf_band[1]:  # slow breathing: LF ends where the moved HF band begins
        lf_band = (lf_band[0], max(lf_band[0], band[0]))
    out = hrv_frequency(
        epoch["t"], epoch["rr"], resample_hz=resample_hz, vlf=vlf, lf=lf_band, hf=band
    )
    res = {k: out[k] for k in ("vlf", "lf", "hf", "total_power", "lf_hf", "lf_nu", "hf_nu")}
    res.update(hf_lo=float(band[0]), hf_hi=float(band[1]))
    return res


_NONLINEAR_SOURCE = (
    "Brennan et al. 2001 (Poincare); Peng et al. 1995 (DFA); Richman & Moorman 2000 "
    "(SampEn); Pincus 1991 (ApEn); defaults as NeuroKit2 (Makowski et al. 2021)"
)


@register_feature(
    "hrv_nonlinear",
    inputs={"rr": "ms"},
    outputs={
        "sd1": Output("ms", "Poincare SD1 (short-term NN variability)"),
        "sd2": Output("ms", "Poincare SD2 (long-term NN variability)"),
        "sd1_sd2": Output("1", "Poincare SD1/SD2 ratio"),
        "dfa_alpha1": Output("1", "DFA short-term scaling exponent alpha1"),
        "dfa_alpha2": Output("1", "DFA long-term scaling exponent alpha2"),
        "sampen": Output("1", "sample entropy of the NN intervals"),
        "apen": Output("1", "approximate entropy of the NN intervals"),
    },
    parameters={
        "dfa_short": Parameter((4, 16), "beats", "alpha1 box sizes", "Peng et al. 1995"),
        "dfa_long": Parameter((16, 64), "beats", "alpha2 box sizes", "Peng et al. 1995"),
        "entropy_m": Parameter(2, "beats", "template length", "Richman & Moorman 2000"),
        "entropy_r": Parameter(0.2, "SD", "tolerance, fraction of the NN SD", "Pincus 1991"),
        "entropy_max_beats": Parameter(
            20000,
            "beats",
            "longest epoch whose entropies are computed (all pairs: O(n^2)); longer: NaN, flagged",
            "cardiolab: 20000 beats (about 5.5 h at 60 bpm) take about 3 s on one core; a "
            "24-h epoch (~100000 beats) would take over a minute",
        ),
    },
    source=_NONLINEAR_SOURCE,
)
def _hrv_nonlinear(epoch, *, dfa_short, dfa_long, entropy_m, entropy_r, entropy_max_beats):
    """Nonlinear HRV of the NN intervals."""
    return hrv_nonlinear(
        epoch["rr"],
        dfa_short=tuple(dfa_short),
        dfa_long=tuple(dfa_long),
        entropy_m=entropy_m,
        entropy_r=entropy_r,
        entropy_max_beats=entropy_max_beats,
    )


@register_feature(
    "baroreflex_sequence",
    inputs={"rr": "ms", "sbp": "mmHg"},
    outputs={
        "brs": Output("ms/mmHg", "baroreflex sensitivity (sequence method)"),
        "brs_n_sequences": Output("1", "number of baroreflex sequences"),
        "brs_n_up": Output("1", "number of up (SBP and RR rising) baroreflex sequences"),
        "brs_n_down": Output("1", "number of down (SBP and RR falling) baroreflex sequences"),
        "bei": Output("1", "baroreflex effectiveness index"),
    },
    parameters={
        "lag": Parameter(1, "beats", "RR lag after the SBP it is paired with", PARATI),
        "min_beats": Parameter(3, "beats", "shortest sequence", PARATI),
        "min_dsbp": Parameter(1.0, "mmHg", "smallest SBP step", PARATI),
        "min_drr": Parameter(5.0, "ms", "smallest RR step", PARATI),
        "min_r": Parameter(0.85, "1", "smallest SBP-RR correlation", PARATI),
    },
    source=PARATI,
)
def _baroreflex_sequence(epoch, *, lag, min_beats, min_dsbp, min_drr, min_r):
    """Spontaneous baroreflex sensitivity by the sequence method."""
    seq = baroreflex_sequence(
        epoch["sbp"],
        epoch["rr"],
        min_beats=min_beats,
        min_dsbp=min_dsbp,
        min_drr=min_drr,
        min_r=min_r,
        lag=lag,
    )
    return {
        "brs": seq["brs"],
        "brs_n_sequences": seq["n_sequences"],
        "brs_n_up": seq["n_up"],
        "brs_n_down": seq["n_down"],
        "bei": seq["bei"],
    }


@register_feature(
    "baroreflex_transfer",
    inputs={"t": "s", "rr": "ms", "sbp": "mmHg"},
    outputs={
        "brs_tf": Output("ms/mmHg", "baroreflex sensitivity (transfer function gain, LF band)"),
        "brs_tf_coherence": Output("1", "mean squared SBP-RR coherence in the LF band"),
        "brs_tf_n_bins": Output("1", "number of LF bins with squared coherence above threshold"),
    },
    parameters={
        "band": Parameter((0.04, 0.15), "Hz", "band of the gain", ROBBE),
        "min_coherence": Parameter(0.5, "1", "squared coherence a bin needs", ROBBE),
        "lag": Parameter(1, "beats", "RR lag after the SBP it is paired with", PARATI),
    },
    source=ROBBE,
)
def _baroreflex_transfer(epoch, *, band, min_coherence, lag):
    """Baroreflex sensitivity by the SBP-to-RR transfer function."""
    tf = baroreflex_transfer(
        epoch["t"],
        epoch["sbp"],
        epoch["rr"],
        band=tuple(band),
        min_coherence=min_coherence,
        lag=lag,
    )
    return {
        "brs_tf": tf["gain"],
        "brs_tf_coherence": tf["coherence"],
        "brs_tf_n_bins": tf["n_bins"],
    }


@register_feature(
    "blood_pressure_variability",
    inputs={"t": "s", "sbp": "mmHg"},
    outputs={
        "sbp_vlf": Output("mmHg2", "SBP very-low-frequency power"),
        "sbp_lf": Output("mmHg2", "SBP low-frequency power (0.04-0.15 Hz, Mayer waves)"),
        "sbp_hf": Output("mmHg2", "SBP high-frequency power"),
        "sbp_total_power": Output("mmHg2", "SBP total power (VLF + LF + HF)"),
        "sbp_lf_hf": Output("1", "SBP LF/HF ratio"),
    },
    source=PARATI_BPV + "; the HRV spectrum's resampling and Welch PSD",
)
def _blood_pressure_variability(epoch):
    """Spectral blood-pressure variability of beat-to-beat SBP."""
    out = bpv_spectrum(epoch["t"], epoch["sbp"])
    res = {k: out[k] for k in ("sbp_vlf", "sbp_lf", "sbp_hf", "sbp_total_power", "sbp_lf_hf")}
    if out.get("reason"):
        res["reason"] = out["reason"]
    return res


@register_feature(
    "blood_pressure",
    inputs={"sbp": "mmHg", "dbp": "mmHg", "map": "mmHg"},
    outputs={
        "sbp": Output("mmHg", "systolic blood pressure"),
        "dbp": Output("mmHg", "diastolic blood pressure"),
        "map": Output("mmHg", "mean arterial pressure"),
        "pp": Output("mmHg", "pulse pressure"),
        "sbp_sd": Output("mmHg", "standard deviation of beat-to-beat systolic pressure"),
        "dbp_sd": Output("mmHg", "standard deviation of beat-to-beat diastolic pressure"),
    },
    source="beat-to-beat means and SDs of the pressure beats (abp_valid)",
)
def _blood_pressure(epoch):
    """Mean and variability of beat-to-beat arterial pressure."""
    return blood_pressure_features(epoch["sbp"], epoch["dbp"], epoch["map"])


@register_feature(
    "stroke_volume",
    inputs={"sv": "mL", "rr": "ms", "map": "mmHg"},
    outputs={
        "sv": Output(
            "mL", "stroke volume, mean over beats (relative units if uncalibrated pulse contour)"
        ),
        "co": Output("L/min", "cardiac output, total stroke volume over total RR time"),
        "tpr": Output("mmHg.min/L", "total peripheral resistance, mean MAP / cardiac output"),
        "n_beats_sv": Output("1", "number of beats with stroke volume, NN interval and MAP"),
    },
    parameters={
        "min_beats": Parameter(MIN_BEATS, "beats", "fewest beats for a value", "cardiolab"),
        "in_flight": Parameter(
            "nan",
            "1",
            "in-flight sessions: 'nan' (flagged, no value) or 'keep' (flagged, value kept)",
            "pulse-contour SV (Modelflow) is known to fail in microgravity: the 1-g "
            "aortic pressure-area model (Langewouters 1984) no longer holds",
        ),
    },
    source=WESSELING,
)
def _stroke_volume(epoch, *, min_beats, in_flight):
    """Stroke volume, cardiac output and total peripheral resistance (pulse contour)."""
    if in_flight not in ("nan", "keep"):
        raise ValueError(f"stroke_volume: in_flight must be 'nan' or 'keep', got {in_flight!r}")
    out = stroke_volume_features(epoch["sv"], epoch["rr"], epoch["map"], min_beats=min_beats)
    phase = epoch.session.get("phase")
    if phase is not None and not pulse_contour_reliable(str(phase)):
        note = "in flight: pulse-contour stroke volume is not trusted in microgravity"
        if in_flight == "nan":
            out.update(sv=np.nan, co=np.nan, tpr=np.nan)
        out["reason"] = f"{out['reason']}; {note}" if out.get("reason") else note
    return out


_DOPPLER_OUTPUTS = {
    "n_beats_{vessel}": Output(
        "1", "number of beats used for {vessel} Doppler (valid and doppler_valid)"
    ),
    "{vessel}_psv": Output("cm/s", "{vessel} peak systolic velocity"),
    "{vessel}_edv": Output("cm/s", "{vessel} end-diastolic velocity"),
    "{vessel}_tamv": Output("cm/s", "{vessel} time-averaged maximum velocity"),
    "{vessel}_ri": Output("1", "{vessel} resistive index"),
    "{vessel}_pi": Output("1", "{vessel} pulsatility index"),
}


@register_feature(
    "doppler_indices",
    inputs={},
    any_of=("psv", "edv", "tamv", "ri", "pi"),
    outputs=_DOPPLER_OUTPUTS,
    per_vessel=True,
    source=(
        "Pourcelot L (1974) resistive index; Gosling RG, King DH (1974) pulsatility index; "
        "means of the beat values (doppler_valid)"
    ),
)
def _doppler_indices(epoch):
    """Mean Doppler velocities and indices of a vessel."""
    out = {f"n_beats_{epoch.vessel}": epoch.count("doppler_valid")}
    arrays = {q: epoch[q] for q in ("psv", "edv", "tamv", "ri", "pi")}
    out.update(doppler_features(vessel=epoch.vessel, **arrays))
    return out


def _band_long_name(band):
    return f"LDF wavelet power in the {BAND_NAMES.get(band, band)} band"


@register_feature(
    "ldf_vasomotion",
    inputs={"ldf": "PU"},
    outputs={
        **{f"ldf_{b}_power": Output("PU2", _band_long_name(b)) for b in LDF_BANDS},
        "ldf_endothelial_power": Output("PU2", _band_long_name("endothelial_no")),
    },
    parameters={
        "bands": Parameter(
            LDF_BANDS, "Hz", "vasomotion band edges (names fixed, edges overridable)", STEFANOVSKA
        )
    },
    source=STEFANOVSKA + "; Morlet wavelet, omega0 = 2 pi, cone of influence excluded",
)
def _ldf_vasomotion(epoch, *, bands):
    """Wavelet power of skin flux in the vasomotion bands."""
    if set(bands) != set(LDF_BANDS):
        raise ValueError(
            f"ldf_vasomotion: bands must keep the names {sorted(LDF_BANDS)}, got {sorted(bands)}"
        )
    _, x, fs = epoch.signal("ldf")
    powers = ldf_band_power(x, fs, bands={k: tuple(v) for k, v in bands.items()})
    out = {f"ldf_{name}_power": p for name, p in powers.items()}
    out["ldf_endothelial_power"] = powers["endothelial_no"]
    return out


@register_feature(
    "skin_flux",
    inputs={},
    any_of=("flux", "ldf"),
    outputs={
        "flux": Output("PU", "mean laser Doppler skin flux"),
        "cvc": Output("PU/mmHg", "cutaneous vascular conductance (flux / MAP)"),
    },
    uses=("map",),
    source=(
        "mean flux and CVC = flux / MAP (Cracowski JL et al. 2006, Trends Pharmacol Sci "
        "27:503-508); beat-averaged flux of valid beats where the beat table has it"
    ),
)
def _skin_flux(epoch):
    """Mean skin flux and cutaneous vascular conductance."""
    if "flux" in epoch.columns:
        flux = epoch["flux"]
        mean = float(np.nanmean(flux)) if np.isfinite(flux).any() else np.nan
        ok = epoch.mask("ldf_valid") & epoch.mask("abp_valid")
        if not ok.any():
            return {"flux": mean, "cvc": np.nan}
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN means give NaN
            cvc = float(np.nanmean(flux[ok])) / float(np.nanmean(epoch["map"][ok]))
        return {"flux": mean, "cvc": cvc}
    _, x, _ = epoch.signal("ldf")
    mean = float(np.nanmean(x)) if np.isfinite(x).any() else np.nan
    map_mean = epoch.results.get("map")
    cvc = mean / map_mean if map_mean is not None and np.isfinite(map_mean) else np.nan
    return {"flux": mean, "cvc": cvc}


_TFA_BANDS = ("vlf", "lf", "hf")
_TFA_BAND_NAMES = {
    "vlf": "VLF (0.02-0.07 Hz)",
    "lf": "LF (0.07-0.2 Hz)",
    "hf": "HF (0.2-0.5 Hz)",
}


def _tfa_outputs():
    out = {}
    for b in _TFA_BANDS:
        name = _TFA_BAND_NAMES[b]
        out[f"{{vessel}}_tfa_gain_{b}"] = Output(
            "cm/s/mmHg", f"{{vessel}} MAP-to-CBFV transfer function gain, {name}"
        )
        out[f"{{vessel}}_tfa_gain_norm_{b}"] = Output(
            "%/mmHg", f"{{vessel}} normalised transfer function gain, {name}"
        )
        out[f"{{vessel}}_tfa_gain_pct_{b}"] = Output(
            "%/%", f"{{vessel}} transfer function gain, CBFV and MAP in % of mean, {name}"
        )
        out[f"{{vessel}}_tfa_phase_{b}"] = Output(
            "degree", f"{{vessel}} MAP-to-CBFV transfer function phase, {name}"
        )
        out[f"{{vessel}}_tfa_coherence_{b}"] = Output(
            "1", f"{{vessel}} mean squared MAP-CBFV coherence, {name}"
        )
    out["{vessel}_tfa_n_windows"] = Output("1", "{vessel} number of TFA (Welch) windows")
    out["{vessel}_mx"] = Output("1", "{vessel} mean flow index Mx (MAP-CBFV correlation)")
    return out


@register_feature(
    "cerebral_autoregulation",
    inputs={"t": "s", "map": "mmHg", "tamv": "cm/s"},
    outputs=_tfa_outputs(),
    per_vessel=True,
    vessels=is_cerebral,
    parameters={
        "resample_hz": Parameter(
            10.0, "Hz", "beat-to-beat MAP and mean CBFV resampled (linear)", CLAASSEN
        ),
        "tfa": Parameter(
            {k: v for k, v in CARNET_DEFAULTS.items() if k != "coherence2_thresholds"},
            "mixed",
            "CARNet TFA parameters (bands Hz, window s, overlap %, smoothing points)",
            CLAASSEN,
        ),
        "mx_block_s": Parameter(3.0, "s", "Mx averaging block", CZOSNYKA),
        "mx_window_s": Parameter(60.0, "s", "Mx correlation window", CZOSNYKA),
    },
    source=CLAASSEN + "; " + CZOSNYKA,
)
def _cerebral_autoregulation(epoch, *, resample_hz, tfa, mx_block_s, mx_window_s):
    """Dynamic cerebral autoregulation (TFA, Mx) of a cerebral vessel."""
    t, p, v = epoch["t"], epoch["map"], epoch["tamv"]
    ok = np.isfinite(t) & np.isfinite(p) & np.isfinite(v)
    if np.count_nonzero(ok) < 3:
        return {"reason": f"{np.count_nonzero(ok)} beats with both MAP and {epoch.vessel} CBFV"}
    t0, t1 = t[ok][0], t[ok][-1]
    grid = t0 + np.arange(int(np.floor((t1 - t0) * resample_hz + 1e-6)) + 1) / resample_hz
    p10 = np.interp(grid, t[ok], p[ok])
    v10 = np.interp(grid, t[ok], v[ok])
    out = {}
    reasons = []
    try:
        res = cerebral_autoregulation(p10, v10, fs=resample_hz, **tfa)
        for b in _TFA_BANDS:
            band = res.sel(band=b)
            out[f"{epoch.vessel}_tfa_gain_{b}"] = float(band["gain"])
            out[f"{epoch.vessel}_tfa_gain_norm_{b}"] = float(band["gain_norm"])
            out[f"{epoch.vessel}_tfa_gain_pct_{b}"] = float(band["gain_pct"])
            out[f"{epoch.vessel}_tfa_phase_{b}"] = float(band["phase"])
            out[f"{epoch.vessel}_tfa_coherence_{b}"] = float(band["coherence"])
        out[f"{epoch.vessel}_tfa_n_windows"] = float(res["n_windows"])
    except SignalQualityError as err:
        reasons.append(f"TFA: {err}")
    try:
        mx = mean_flow_index(p10, v10, fs=resample_hz, block_s=mx_block_s, window_s=mx_window_s)
        out[f"{epoch.vessel}_mx"] = float(mx["mx"])
    except (SignalQualityError, ValueError) as err:
        reasons.append(f"Mx: {err}")
    if reasons:
        out["reason"] = "; ".join(reasons)
    return out
