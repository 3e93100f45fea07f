"""Skin microcirculation: laser Doppler flux, conductance and vasomotion band power.

Vasomotion is quantified by a continuous Morlet wavelet transform (Stefanovska et
al. 1999; Kvandal et al. 2006), computed by FFT convolution in the frequency domain.

Calibration. The analytic Morlet filter at centre frequency ``fc`` has the frequency
response ``2 exp(-(omega0 (f / fc - 1))^2 / 2)`` for ``f > 0`` (0 otherwise), so a
sinusoid ``a cos(2 pi fc t)`` gives a coefficient of modulus ``a`` and an
instantaneous power ``|W|^2 / 2 = a^2 / 2``. The power of a band is the integral of
``|W|^2 / 2`` over ``ln fc`` across the band, divided by the integral of the squared
filter response over ``ln fc`` (the admissibility constant of this normalisation),
averaged over time. Band powers therefore partition the variance of the signal: a
sinusoid of amplitude ``a`` (PU) well inside a band gives ``a^2 / 2`` (PU²), and
narrow-band noise of variance ``v`` inside a band gives ``v``.

Record length. The wavelet at ``fc`` has an e-folding half-width (cone of
influence) of ``sqrt(2) omega0 / (2 pi fc)`` s. Times closer than that to either end
are excluded from the average, and a band is reported as NaN when the remaining
record holds fewer than ``min_cycles`` (default 2) cycles of its lowest frequency.
With ``omega0 = 2 pi`` a band of lower edge ``f_lo`` needs about
``(min_cycles + 2.83) / f_lo`` s: 8.5 min for the endothelial NO-dependent band
(0.0095 Hz), 16 min for the NO-independent band (0.005 Hz), 3.8 min for the
neurogenic band.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = [
    "LDF_BANDS",
    "morlet_cwt_power",
    "ldf_band_power",
    "ldf_features",
    "min_duration_s",
]

#: Vasomotion bands (Hz), SCIENCE.md "Standard indices".
LDF_BANDS = {
    "endothelial_ni": (0.005, 0.0095),
    "endothelial_no": (0.0095, 0.021),
    "neurogenic": (0.021, 0.052),
    "myogenic": (0.052, 0.145),
    "respiratory": (0.145, 0.6),
    "cardiac": (0.6, 2.0),
}

#: Long names of the bands.
BAND_NAMES = {
    "endothelial_ni": "endothelial NO-independent",
    "endothelial_no": "endothelial NO-dependent",
    "neurogenic": "neurogenic",
    "myogenic": "myogenic",
    "respiratory": "respiratory",
    "cardiac": "cardiac",
}


def _coi_s(fc, omega0):
    """Cone-of-influence half-width (s) of the Morlet wavelet at ``fc`` (Hz)."""
    return np.sqrt(2.0) * omega0 / (2.0 * np.pi * np.asarray(fc, dtype=float))


def min_duration_s(f_lo, *, omega0=2 * np.pi, min_cycles=2.0):
    """Shortest record (s) for which a band of lower edge ``f_lo`` (Hz) is reported."""
    return min_cycles / f_lo + 2.0 * float(_coi_s(f_lo, omega0))


def _admissibility(omega0):
    """Integral over ln(fc) of the squared (unit-peak) filter response."""
    u = np.linspace(-8.0 / omega0, 8.0 / omega0, 4001)  # ln(f / fc)
    g2 = np.exp(-((omega0 * (np.exp(u) - 1.0)) ** 2))
    return float(np.trapezoid(g2, u))


def morlet_cwt_power(x, fs, freqs, *, omega0=2 * np.pi):
    """Instantaneous Morlet wavelet power ``|W|^2 / 2`` at given centre frequencies.

    Parameters
    ----------
    x : array-like of float
        Evenly sampled signal (any unit U); its mean is removed; no NaN.
    fs : float
        Sampling rate (Hz).
    freqs : array-like of float
        Centre frequencies (Hz).
    omega0 : float
        Morlet central angular frequency (rad); ``2 pi`` as in Stefanovska's work.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(freqs), len(x))``, U²: for a sinusoid of amplitude ``a`` at a
        centre frequency, ``a^2 / 2`` away from the edges.
    """
    x = np.asarray(x, dtype=float)
    freqs = np.atleast_1d(np.asarray(freqs, dtype=float))
    n = x.size
    pad = min(n, int(np.ceil(float(np.max(_coi_s(freqs.min(), omega0))) * fs)))
    nfft = scipy.fft.next_fast_len(n + 2 * pad)
    spec = scipy.fft.fft(x - x.mean(), nfft)
    f = scipy.fft.fftfreq(nfft, 1.0 / fs)
    pos = f > 0
    out = np.empty((freqs.size, n))
    for i, fc in enumerate(freqs):  # one filter per scale; rows are independent
        h = np.zeros(nfft)
        h[pos] = 2.0 * np.exp(-0.5 * (omega0 * (f[pos] / fc - 1.0)) ** 2)
        w = scipy.fft.ifft(spec * h)[:n]
        out[i] = 0.5 * (w.real**2 + w.imag**2)
    return out


def ldf_band_power(
    flux,
    fs,
    bands=None,
    wavelet="morlet",
    *,
    omega0=2 * np.pi,
    voices_per_octave=16,
    min_cycles=2.0,
) -> dict:
    """Time-averaged wavelet power of LDF flux in vasomotion bands.

    Parameters
    ----------
    flux : array-like of float
        Laser Doppler flux (PU), evenly sampled, one epoch. With any NaN sample
        every band is NaN (gaps are not filled silently).
    fs : float
        Sampling rate (Hz).
    bands : dict of str to (float, float), optional
        Band edges (Hz); default :data:`LDF_BANDS`.
    wavelet : {"morlet"}
        Mother wavelet.
    omega0 : float
        Morlet central angular frequency (rad).
    voices_per_octave : int
        Scale resolution of the ln-frequency integration.
    min_cycles : float
        Minimum number of cycles of a band's lowest frequency inside the record once
        the cone of influence is excluded; below it the band is NaN.

    Returns
    -------
    dict of str to float
        Band name to power (PU²): the variance carried by the band, averaged over
        the times outside the cone of influence of each scale. NaN for bands that
        are too slow for the record or above the Nyquist frequency.
    """
    if wavelet != "morlet":
        raise ValueError(f"wavelet {wavelet!r}: only 'morlet' is implemented")
    bands = dict(LDF_BANDS if bands is None else bands)
    x = np.asarray(flux, dtype=float)
    out = {name: np.nan for name in bands}
    if x.ndim != 1 or x.size < 4 or not np.all(np.isfinite(x)):
        return out
    duration = x.size / fs
    k = _admissibility(omega0)
    t = np.arange(x.size) / fs
    for name, (lo, hi) in bands.items():
        if hi > fs / 2 or duration < min_duration_s(lo, omega0=omega0, min_cycles=min_cycles):
            continue
        n_f = max(int(np.ceil(np.log2(hi / lo) * voices_per_octave)), 2)
        du = np.log(hi / lo) / n_f
        fc = np.exp(np.log(lo) + (np.arange(n_f) + 0.5) * du)  # midpoint rule in ln f
        power = morlet_cwt_power(x, fs, fc, omega0=omega0)
        coi = _coi_s(fc, omega0)[:, None]
        inside = (t[None, :] >= coi) & (t[None, :] <= duration - coi)
        mean_t = np.sum(power * inside, axis=1) / np.sum(inside, axis=1)
        out[name] = float(np.sum(mean_t) * du / k)
    return out


def ldf_features(flux, fs, map_mean=None, *, bands=None, **kwargs) -> dict:
    """Epoch features of laser Doppler flux.

    Parameters
    ----------
    flux : array-like of float
        Laser Doppler flux (PU), one epoch, evenly sampled.
    fs : float
        Sampling rate (Hz).
    map_mean : float, optional
        Mean arterial pressure of the epoch (mmHg), for the conductance.
    bands : dict, optional
        Band edges (Hz); default :data:`LDF_BANDS`.
    **kwargs
        Passed to :func:`ldf_band_power`.

    Returns
    -------
    dict
        ``flux`` mean flux (PU, NaN samples ignored); ``cvc`` cutaneous vascular
        conductance ``flux / MAP`` (PU/mmHg, NaN without MAP);
        ``ldf_<band>_power`` band powers (PU²); and ``ldf_endothelial_power``, the
        NO-dependent band power again under the simulator's name.
    """
    x = np.asarray(flux, dtype=float)
    mean = float(np.nanmean(x)) if np.isfinite(x).any() else np.nan
    out = {"flux": mean}
    out["cvc"] = mean / map_mean if map_mean is not None and np.isfinite(map_mean) else np.nan
    powers = ldf_band_power(x, fs, bands=bands, **kwargs)
    out.update({f"ldf_{name}_power": p for name, p in powers.items()})
    if "endothelial_no" in powers:
        out["ldf_endothelial_power"] = powers["endothelial_no"]
    return out
