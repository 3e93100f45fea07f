"""A small synthetic session in the data model, shared by the io and catalog tests."""

import numpy as np

from cardiolab import schema

ATTRS = dict(
    subject="S01",
    session="L-30",
    phase="pre",
    day=-30.0,
    campaign="test",
    protocol="supine-stand",
    posture="supine",
)


def make_session(seconds=8, seed=0, attrs=True):
    """ECG 500 Hz (mV), ABP 200 Hz (mmHg), LDF 32 Hz (PU), Doppler 100 Hz (two vessels),
    respiration 50 Hz (a belt in V)."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds * 500) / 500
    ecg = 1.2 * np.exp(-0.5 * ((t % 0.9 - 0.3) / 0.01) ** 2) + 0.02 * rng.normal(size=t.size)
    tp = np.arange(seconds * 200) / 200
    abp = 80 + 40 * np.clip(np.sin(2 * np.pi * tp / 0.9), 0, None) + rng.normal(size=tp.size)
    tl = np.arange(seconds * 32) / 32
    flux = 12 + 2 * np.sin(2 * np.pi * 0.1 * tl) + 0.2 * rng.normal(size=tl.size)
    td = np.arange(seconds * 100) / 100
    vel = np.vstack(
        [
            10 + 80 * np.clip(np.sin(2 * np.pi * td / 0.9), 0, None),
            40 + 50 * np.clip(np.sin(2 * np.pi * td / 0.9), 0, None),
        ]
    )
    tr = np.arange(seconds * 50) / 50
    resp = 0.2 * np.sin(2 * np.pi * 0.25 * tr) + 0.005 * rng.normal(size=tr.size)
    groups = {
        "ecg": schema.signal_group(ecg, 500.0, "ecg"),
        "abp": schema.signal_group(abp, 200.0, "abp"),
        "ldf": schema.signal_group(flux, 32.0, "ldf"),
        "doppler": schema.signal_group(vel, 100.0, "doppler", vessels=["femoral", "mca"]),
        "resp": schema.signal_group(resp, 50.0, "resp", units="V"),
        "protocol": schema.protocol_group(
            [("supine", 0.0, seconds / 2), ("stand", seconds / 2, float(seconds))]
        ),
    }
    return schema.session_node(groups, **(ATTRS if attrs else {}))


def with_attrs(node):
    """Add the session attributes a reader does not know."""
    out = node.copy()
    out.attrs.update(ATTRS)
    return out


#: channel mappings for the files the writers produce
EDF_CHANNELS = {
    "ECG": {"group": "ecg"},
    "ABP": {"group": "abp"},
    "LDF": {"group": "ldf"},
    "Doppler femoral": {"group": "doppler", "vessel": "femoral"},
    "Doppler mca": {"group": "doppler", "vessel": "mca"},
    "Resp": {"group": "resp"},
}
