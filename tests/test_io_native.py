"""Native stores (zarr, netCDF): round trips, laziness, missing groups, overwrite."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from session_checks import assert_epochs_equal, assert_group_close
from sessions import make_session

from cardiolab import io
from cardiolab.encoding import STORAGE_RESOLUTION
from cardiolab.errors import CardiolabError, SessionFormatError
from cardiolab.io.native import check_zarr_chunks
from cardiolab.schema import RAW_GROUPS, validate_campaign, validate_session

pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")


@pytest.fixture
def session():
    return make_session()


@pytest.fixture
def campaign(session):
    other = make_session(seed=1)
    other.attrs.update(subject="S02")
    return xr.DataTree.from_dict({"S01/L-30": session, "S02/L-30": other})


def _quantised(node, group):
    """What a zarr store holds: samples rounded to the storage resolution (respiration,
    in its recorded unit: float32)."""
    out = node.copy()
    var = RAW_GROUPS[group].variable
    ds = out[group].to_dataset(inherit=False)
    if group in STORAGE_RESOLUTION:
        res = STORAGE_RESOLUTION[group]
        out[group] = ds.assign({var: np.round(ds[var] / res) * res})
    else:
        out[group] = ds.assign({var: ds[var].astype(np.float32).astype(np.float64)})
    return out


def _half_step(node, group):
    """Largest rounding error of a stored group's samples."""
    if group in STORAGE_RESOLUTION:
        return 0.5 * STORAGE_RESOLUTION[group] + 1e-12
    values = node[group].to_dataset(inherit=False)[RAW_GROUPS[group].variable].values
    return float(np.max(np.abs(values))) * np.finfo(np.float32).eps


def _assert_lazy(node):
    for group in RAW_GROUPS:
        var = RAW_GROUPS[group].variable
        assert isinstance(node[group].to_dataset(inherit=False)[var].data, da.Array), group


def test_the_synthetic_session_follows_the_data_model(session):
    validate_session(session)
    assert session["doppler"].ds["velocity"].dims == ("vessel", "time")
    assert (
        75 < float(session["abp"].ds["abp"].min()) and float(session["abp"].ds["abp"].max()) < 125
    )


def test_zarr_round_trip_is_exact_at_the_storage_resolution(tmp_path, campaign, session):
    io.write_campaign_zarr(campaign, tmp_path / "c.zarr")
    read = io.read_zarr_session(tmp_path / "c.zarr", "S01/L-30")
    _assert_lazy(read)
    assert dict(read.attrs) == dict(session.attrs)
    for group in RAW_GROUPS:
        # the store holds int32 counts of 0.001 (respiration float32): exactly the
        # rounded samples ...
        assert_group_close(read, _quantised(session, group), group, atol=0)
        # ... so within half the resolution of the written ones
        assert_group_close(read, session, group, atol=_half_step(session, group))
    assert read["resp"].ds["resp"].attrs["units"] == "V"
    assert_epochs_equal(read, session, atol=0)
    validate_session(read)


def test_netcdf_round_trip_is_exact(tmp_path, campaign, session):
    io.write_campaign_netcdf(campaign, tmp_path / "c.nc")
    read = io.read_session(tmp_path / "c.nc", "netcdf", group="S01/L-30")
    _assert_lazy(read)
    assert dict(read.attrs) == dict(session.attrs)
    for group in RAW_GROUPS:
        assert_group_close(read, session, group, atol=0)
    assert_epochs_equal(read, session, atol=0)
    validate_session(read)


def test_read_session_dispatches_native_formats(tmp_path, campaign):
    io.write_campaign_zarr(campaign, tmp_path / "c.zarr")
    node = io.read_session(tmp_path / "c.zarr", "zarr", group="S02/L-30")
    assert node.attrs["subject"] == "S02"
    assert io.READERS["zarr"] is io.read_zarr_session
    with pytest.raises(SessionFormatError, match=r"c.zarr: a zarr store needs the session 'group'"):
        io.read_session(tmp_path / "c.zarr", "zarr")
    with pytest.raises(SessionFormatError, match=r"option\(s\) \['annotations'\] do not apply"):
        io.read_session(tmp_path / "c.zarr", "zarr", group="S01/L-30", annotations="atr")
    with pytest.raises(SessionFormatError, match=r"unknown format 'hdf5'"):
        io.read_session(tmp_path / "c.zarr", "hdf5")


def test_whole_store_opens_lazily(tmp_path, campaign):
    io.write_campaign_zarr(campaign, tmp_path / "c.zarr")
    tree = io.open_campaign_store(tmp_path / "c.zarr")
    assert sorted(tree.children) == ["S01", "S02"]
    _assert_lazy(tree["S02/L-30"])
    validate_campaign(tree)


def test_missing_session_group_lists_what_the_store_has(tmp_path, campaign):
    io.write_campaign_zarr(campaign, tmp_path / "c.zarr")
    with pytest.raises(
        SessionFormatError,
        match=r"c.zarr: no session group 'S03/R\+1' \(the store has: S01/L-30, S02/L-30\)",
    ):
        io.read_zarr_session(tmp_path / "c.zarr", "S03/R+1")
    io.write_campaign_netcdf(campaign, tmp_path / "c.nc")
    with pytest.raises(SessionFormatError, match=r"c.nc: no session group 'S01/FD5'.*S01/L-30"):
        io.read_netcdf_session(tmp_path / "c.nc", "S01/FD5")


def test_missing_or_foreign_store(tmp_path):
    with pytest.raises(SessionFormatError, match=r"absent.zarr: native store not found"):
        io.read_zarr_session(tmp_path / "absent.zarr", "S01/L-30")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(SessionFormatError, match=r"empty.zarr: not a readable zarr campaign store"):
        io.open_campaign_store(tmp_path / "empty.zarr")
    (tmp_path / "junk.nc").write_bytes(b"not hdf5 at all")
    with pytest.raises(SessionFormatError, match=r"junk.nc: not a readable h5netcdf campaign"):
        io.read_netcdf_session(tmp_path / "junk.nc", "S01/L-30")


def test_writers_refuse_to_overwrite(tmp_path, campaign):
    io.write_campaign_zarr(campaign, tmp_path / "c.zarr")
    with pytest.raises(CardiolabError, match=r"c.zarr exists; pass overwrite=True"):
        io.write_campaign_zarr(campaign, tmp_path / "c.zarr")
    smaller = xr.DataTree.from_dict({"S09/L-30": make_session(seconds=2)})
    io.write_campaign_zarr(smaller, tmp_path / "c.zarr", overwrite=True)
    assert list(io.open_campaign_store(tmp_path / "c.zarr").children) == ["S09"]
    io.write_campaign_netcdf(campaign, tmp_path / "c.nc")
    with pytest.raises(CardiolabError, match=r"c.nc exists"):
        io.write_campaign_netcdf(campaign, tmp_path / "c.nc")


def test_zarr_store_behind_an_fsspec_url(campaign, session):
    url = "memory://cardiolab-test-io-native/c.zarr"
    try:
        io.write_campaign_zarr(campaign, url)
        read = io.read_session(url, "zarr", group="S01/L-30", storage_options={})
        _assert_lazy(read)
        assert_group_close(read, _quantised(session, "abp"), "abp", atol=0)
        with pytest.raises(CardiolabError, match="exists"):
            io.write_campaign_zarr(campaign, url)
    finally:
        import fsspec

        fs = fsspec.filesystem("memory")
        if fs.exists("/cardiolab-test-io-native"):
            fs.rm("/cardiolab-test-io-native", recursive=True)


def test_session_groups_are_consolidated_and_plain_stores_read_too(tmp_path, campaign):
    """cardiolab's writer consolidates each session group's metadata (a session opens
    with one read of the store); a store written by other tools without it reads the
    same."""
    import warnings

    import zarr

    ours = io.write_campaign_zarr(campaign, tmp_path / "ours.zarr")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated")
        group = zarr.open_group(str(ours / "S01" / "L-30"), mode="r")
        assert group.metadata.consolidated_metadata is not None
        plain = tmp_path / "plain.zarr"
        campaign.to_zarr(plain, consolidated=False)
        assert zarr.open_group(str(plain / "S01" / "L-30")).metadata.consolidated_metadata is None
    a = io.read_session(ours, "zarr", group="S01/L-30").compute()
    b = io.read_session(plain, "zarr", group="S01/L-30").compute()
    assert set(a.children) == set(b.children)
    for name in a.children:
        xr.testing.assert_allclose(a[name].to_dataset(), b[name].to_dataset(), atol=5e-4)


# --- the chunk check of a session (check_zarr_chunks) ------------------------------------

# the doppler velocity (vessel x time, 2 x 800) in 1 x 200 chunks: a 2 x 4 chunk grid
DOPPLER_CHUNKS = {"vessel": 1, "time": 200}
# the key of its chunk (1, 2), in each zarr format's default chunk key encoding
DELETED_CHUNK = {3: "doppler/velocity/c/1/2", 2: "doppler/velocity/1.2"}


def _chunked_store(path, zarr_format: int):
    """A one-session store whose 2-D doppler velocity has 8 chunks: cardiolab's writer
    (zarr v3) or xarray's zarr v2 writer (a store written by other tools)."""
    session = make_session()
    doppler = session["doppler"].to_dataset(inherit=False).chunk(DOPPLER_CHUNKS)
    session["doppler"] = xr.DataTree(doppler)
    tree = xr.DataTree.from_dict({"S01/L-30": session})
    if zarr_format == 3:
        return io.write_campaign_zarr(tree, path)
    tree.to_zarr(path, zarr_format=2, consolidated=True, write_empty_chunks=True)
    return path


@pytest.mark.parametrize("zarr_format", [3, 2], ids=lambda f: f"zarr v{f}")
def test_chunk_check_finds_the_one_chunk_deleted_from_a_2d_array(tmp_path, zarr_format):
    """The chunk keys come from each array's metadata (v3 ``c/1/2``, v2 ``1.2``); an
    object that is not a chunk's (a partial copy's leftover) is not counted as one."""
    import zarr

    store = _chunked_store(tmp_path / "s.zarr", zarr_format)
    velocity = zarr.open_array(store / "S01/L-30/doppler/velocity", mode="r")
    assert velocity.nchunks == 8  # zarr's own count of the chunk grid
    check_zarr_chunks(store, "S01/L-30")  # every chunk there: no error
    read = io.read_zarr_session(store, "S01/L-30")  # opened as a store of its format
    session = make_session()
    expected = session["doppler"].to_dataset(inherit=False)["velocity"].values
    # cardiolab's writer stores counts of the storage resolution; xarray's, float64
    atol = _half_step(session, "doppler") if zarr_format == 3 else 0
    np.testing.assert_allclose(read["doppler"]["velocity"].values, expected, rtol=0, atol=atol)
    chunk = store / "S01/L-30" / DELETED_CHUNK[zarr_format]
    chunk.unlink()
    chunk.with_name(chunk.name + ".partial").write_bytes(b"not a chunk")
    with pytest.raises(SessionFormatError) as err:
        check_zarr_chunks(store, "S01/L-30")
    assert str(store) in str(err.value)
    assert "array 'S01/L-30/doppler/velocity' has 7 of its 8 chunks" in str(err.value)
    assert err.value.violations == [
        f"{store}: array 'S01/L-30/doppler/velocity' has 7 of its 8 chunks"
    ]
    assert velocity.nchunks_initialized == 7  # zarr's own count agrees


def test_chunk_check_lists_the_session_once(tmp_path, monkeypatch):
    """One recursive listing of the session group, whatever its number of arrays."""
    import fsspec.implementations.local as local

    store = _chunked_store(tmp_path / "s.zarr", 3)
    check_zarr_chunks(store, "S01/L-30")  # the root metadata parsed once
    listed = []
    find = local.LocalFileSystem.find

    def counted_find(self, path, *args, **kwargs):
        listed.append(path)
        return find(self, path, *args, **kwargs)

    monkeypatch.setattr(local.LocalFileSystem, "find", counted_find)
    check_zarr_chunks(store, "S01/L-30")
    assert listed == [f"{(store / 'S01/L-30').as_posix()}/"]


def test_chunk_check_counts_the_shards_of_a_sharded_array(tmp_path):
    """A sharded array (zarr v3 sharding codec; not written by cardiolab, but readable)
    is stored as one object per shard: those are what is counted."""
    import zarr

    root = zarr.open_group(tmp_path / "s.zarr", mode="w")
    values = root.create_group("S01/L-30/x").create_array(
        "values", shape=(1000,), chunks=(100,), shards=(400,), dtype="int32"
    )
    values[:] = np.arange(1, 1001, dtype="int32")
    zarr.consolidate_metadata(root.store)
    check_zarr_chunks(tmp_path / "s.zarr", "S01/L-30")  # 3 shards, the last one partial
    (tmp_path / "s.zarr/S01/L-30/x/values/c/1").unlink()
    with pytest.raises(SessionFormatError) as err:
        check_zarr_chunks(tmp_path / "s.zarr", "S01/L-30")
    assert err.value.violations == [
        f"{tmp_path / 's.zarr'}: array 'S01/L-30/x/values' has 2 of its 3 shards"
    ]
