"""The README's "your own recordings" catalog, written and processed for the tests.

The catalog is read from README.md itself (the YAML block after the marker comment),
so the example users copy is the one the tests run. Its files are the public
recordings in ``../shared/data``; the one change is e0103, which is given 10 s of
lead-off NaN before its first sample (written to a temporary file).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import wfdb
import yaml

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- real-recordings catalog:"
#: Seconds of NaN written before e0103 (electrodes not yet on).
LEAD_OFF_S = 10.0
E0103_RATE = 250.0


def readme_catalog() -> dict:
    """The real-recordings catalog of README.md, parsed."""
    text = README.read_text(encoding="utf-8")
    start = text.index(MARKER)
    block = re.search(r"```yaml\n(.*?)```", text[start:], flags=re.S)
    assert block is not None, f"{README}: no yaml block after {MARKER!r}"
    return yaml.safe_load(block.group(1))


#: MIT-BIH 105 as a LabChart text export: (start, stop) of each block in the record (s)
LABCHART_BLOCKS = ((0.0, 60.0), (90.0, 150.0))


def write_labchart_text(path: Path, blocks, fs: float, title: str, unit: str) -> Path:
    """A LabChart text export (tab-separated, CRLF, a header per block, times from the
    block's start), as LabChart writes them (see ../shared/data/labchart): ``blocks``
    is a list of (start time in s from the first block, samples)."""
    excel_day0 = 45_000.0  # an ExcelDateTime serial (days)
    lines = []
    for start, values in blocks:
        serial = excel_day0 + start / 86_400.0
        lines += [
            f"Interval=\t{1.0 / fs:.9g} s",
            f"ExcelDateTime=\t{serial:.16e}\t03/15/26 09:00:00",
            "TimeFormat=\tStartOfBlock",
            "DateFormat=\t",
            f"ChannelTitle=\t{title}",
            f"Range=\t5.000 {unit}",
            f"UnitName=\t{unit}",
        ]
        lines += [f"{k / fs:.6g}\t{v:.6g}" for k, v in enumerate(values)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


#: Sessions of the ultrasound sheet the tests write (carotid IMT, jugular vein area)
ULTRASOUND_SESSIONS = (("S01", "L-30"), ("S01", "R+1"), ("S03", "L-30"), ("S03", "R+1"))


def write_real_catalog(folder: Path, shared: Path) -> tuple[Path, dict]:
    """Write the catalog (and e0103 with its lead-off stretch, and MIT-BIH 105 as a
    LabChart export, a session of subject S05) into ``folder``.

    Returns the catalog path and the environment that points it at ``shared`` (raw
    data, read only) and at a derived store in ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = readme_catalog()
    values = np.loadtxt(shared / "real_world" / "e0103.csv")
    lead_off = np.full(int(LEAD_OFF_S * E0103_RATE), np.nan)
    e0103 = folder / "e0103_lead_off.csv"
    np.savetxt(e0103, np.r_[lead_off, values], fmt="%.6g")
    for s in data["sessions"]:
        for f in s["files"]:
            if f["path"].endswith("e0103.csv"):
                f["path"] = str(e0103)
    record = wfdb.rdrecord(str(shared / "mitdb" / "105"), channel_names=["MLII"])
    fs = float(record.fs)
    signal = record.p_signal[:, 0]
    blocks = [(a, signal[int(a * fs) : int(b * fs)]) for a, b in LABCHART_BLOCKS]
    labchart = write_labchart_text(folder / "mitdb105_labchart.txt", blocks, fs, "ECG", "mV")
    data["subjects"].append({"code": "S05"})
    data["sessions"].append(
        {
            "subject": "S05",
            "label": "R+1",
            "files": [
                {"path": str(labchart), "format": "labchart", "channels": {"ECG": {"group": "ecg"}}}
            ],
        }
    )
    # a lab's ultrasound sheet: one row per session, units in the header
    sheet = folder / "ultrasound.csv"
    rows = ["subject,session,carotid_imt [mm],jugular_vein_area [cm2]"]
    for k, (subject, label) in enumerate(ULTRASOUND_SESSIONS):
        rows.append(f"{subject},{label},{0.55 + 0.01 * k:.3f},{0.40 + 0.05 * k:.3f}")
    sheet.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data["measurements"] = [{"path": str(sheet)}]
    path = folder / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    env = {
        **os.environ,
        "CARDIOLAB_SHARED_DATA": str(shared),
        "CARDIOLAB_DERIVED": str(folder / "derived.zarr"),
    }
    return path, env


def cardiolab(*args, env) -> subprocess.CompletedProcess:
    """Run the ``cardiolab`` command line as a user does (a new process)."""
    return subprocess.run(
        [sys.executable, "-m", "cardiolab.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
