"""Where the reference recordings are: ../shared/data beside the repository."""

from pathlib import Path

#: ../shared/data beside the repository (PhysioNet records and reference tables)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
