"""Beat-level signal processing: R-peaks, RR artefacts, pressure, Doppler and LDF beats.

The main entry points are :func:`detect_r_peaks` (ECG), :func:`classify_rr` (RR
artefacts, Lipponen & Tarvainen 2019) and :func:`beat_table` (one labelled row per
heartbeat for a whole session).
"""

from .ecg import QRS_PARAMETERS, RR_FLAGS, classify_rr, detect_r_peaks

__all__ = ["QRS_PARAMETERS", "RR_FLAGS", "classify_rr", "detect_r_peaks"]
