"""Assertions shared by the io tests: a read session against the one that was written."""

import numpy as np

from cardiolab.schema import RAW_GROUPS


def assert_group_close(read, orig, group, atol, *, rtol=0.0, channel=None):
    """Samples, units, rate and time of one group agree within ``atol`` (+ ``rtol``).

    ``atol`` may be a number, or for ``doppler`` a mapping ``{vessel: atol}``.
    """
    var = RAW_GROUPS[group].variable
    a = orig[group].to_dataset(inherit=False)
    b = read[group].to_dataset(inherit=False)
    assert b[var].attrs["units"] == a[var].attrs["units"]
    assert b.attrs["sampling_rate"] == a.attrs["sampling_rate"]
    np.testing.assert_allclose(b["time"].values, a["time"].values, rtol=0, atol=1e-12)
    if group == "doppler":
        assert [str(v) for v in b["vessel"].values] == [str(v) for v in a["vessel"].values]
        for vessel in a["vessel"].values:
            tol = atol[str(vessel)] if isinstance(atol, dict) else atol
            np.testing.assert_allclose(
                b[var].sel(vessel=vessel).values,
                a[var].sel(vessel=vessel).values,
                rtol=rtol,
                atol=tol,
                err_msg=f"doppler {vessel}",
            )
    else:
        np.testing.assert_allclose(
            b[var].values, a[var].values, rtol=rtol, atol=atol, err_msg=group
        )
    if channel is not None:
        assert b.attrs["channel"] == channel


def assert_epochs_equal(read, orig, atol):
    """The protocol epochs (labels, start, stop) agree within ``atol`` seconds."""
    p_read = read["protocol"].to_dataset(inherit=False)
    p_orig = orig["protocol"].to_dataset(inherit=False)
    assert [str(x) for x in p_read["epoch"].values] == [str(x) for x in p_orig["epoch"].values]
    assert [str(x) for x in p_read["label"].values] == [str(x) for x in p_orig["label"].values]
    np.testing.assert_allclose(p_read["start"], p_orig["start"], rtol=0, atol=atol)
    np.testing.assert_allclose(p_read["stop"], p_orig["stop"], rtol=0, atol=atol)
