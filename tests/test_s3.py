"""Object storage: a campaign's catalog and raw store on a loopback S3 server (moto).

The campaign is simulated locally, then its catalog, native zarr store and measurement
table are uploaded to a fresh bucket of the ``s3_server`` fixture (conftest.py). Every
read over S3 is compared with the local read of the same files.
"""

import pickle
import time

import numpy as np
import pytest
import yaml

from cardiolab.catalog import CatalogSpec, open_catalog
from cardiolab.cli import main
from cardiolab.errors import CatalogError, SessionFormatError
from cardiolab.io.native import check_zarr_chunks, read_zarr_session

SESSIONS = [("S01", "L-30"), ("S01", "R+3"), ("S02", "L-30"), ("S02", "R+3")]
# what the environment holds for a catalog's ${VAR} references in these tests
VARS = {"key": "CARDIOLAB_TEST_S3_KEY", "secret": "CARDIOLAB_TEST_S3_SECRET"}


@pytest.fixture(scope="module")
def s3_campaign(s3_server, tmp_path_factory):
    """``(local folder, catalog URL, storage options)`` of a 2 x 2-session campaign."""
    from cardiolab.simulate import simulate_campaign

    local = tmp_path_factory.mktemp("s3campaign") / "sim"
    simulate_campaign(
        local,
        n_subjects=2,
        schedule=["L-30", "R+3"],
        duration_min=2,
        seed=11,
        workers=1,
        progress=False,
    )
    bucket = s3_server.new_bucket()
    fs = s3_server.filesystem()
    for name in ("data_catalog.yaml", "measurements.csv"):
        fs.put_file(str(local / name), f"{bucket}/tg2/{name}")
    fs.put(str(local / "campaign.zarr"), f"{bucket}/tg2/campaign.zarr", recursive=True)
    return local, f"s3://{bucket}/tg2/data_catalog.yaml", s3_server.storage_options


def _assert_same_session(remote, local):
    """Every group and variable of two session nodes equal within 1e-9 (absolute)."""
    assert set(remote.children) == set(local.children)
    assert remote.attrs == local.attrs
    for name in local.children:
        a, b = remote[name].to_dataset(), local[name].to_dataset()
        assert set(a.variables) == set(b.variables), name
        for var in b.variables:
            x, y = a[var].values, b[var].values
            assert x.shape == y.shape, (name, var)
            if np.issubdtype(y.dtype, np.number):
                np.testing.assert_allclose(x, y, rtol=0, atol=1e-9, err_msg=f"{name}.{var}")
            else:
                np.testing.assert_array_equal(x, y, err_msg=f"{name}.{var}")


def _remote_catalog(local, url, tmp_path, endpoint, **changes):
    """A local copy of the campaign's catalog whose data root is the bucket's folder,
    with a ``storage_options`` section of ``${VAR}`` references."""
    data = yaml.safe_load((local / "data_catalog.yaml").read_text())
    data.update(
        data_root=url.rsplit("/", 1)[0],
        derived=str(tmp_path / "derived.zarr"),
        storage_options={
            "key": "${%s}" % VARS["key"],
            "secret": "${%s}" % VARS["secret"],
            "client_kwargs": {"endpoint_url": "${CARDIOLAB_TEST_S3_ENDPOINT:-%s}" % endpoint},
        },
    )
    data.update(changes)
    path = tmp_path / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _set_credentials(monkeypatch, options):
    for name, var in VARS.items():
        monkeypatch.setenv(var, options[name])


def test_catalog_at_a_url_resolves_against_its_folder(s3_campaign):
    local, url, options = s3_campaign
    given = {k: (dict(v) if isinstance(v, dict) else v) for k, v in options.items()}
    cat = open_catalog(url, storage_options=given)
    folder = url.rsplit("/", 1)[0]
    assert cat.path == url
    assert cat.root == folder
    assert cat.store_path == f"{folder}/campaign.zarr"
    assert cat.derived_path == f"{folder}/derived.zarr"
    assert cat.storage_options == options
    assert given == options  # not changed
    assert list(zip(cat.sessions["subject"], cat.sessions["session"], strict=True)) == SESSIONS
    # the measurement table is read over S3 too, and equals the local one
    local_cat = open_catalog(local / "data_catalog.yaml")
    remote, here = cat.measurements, local_cat.measurements
    assert remote.shape == here.shape and remote.shape[0] > 0
    np.testing.assert_allclose(
        remote.select_dtypes("number").to_numpy(),
        here.select_dtypes("number").to_numpy(),
        rtol=0,
        atol=1e-9,
    )


def test_session_read_over_s3_equals_the_local_read(s3_campaign):
    local, url, options = s3_campaign
    cat = open_catalog(url, storage_options=options)
    local_cat = open_catalog(local / "data_catalog.yaml")
    node = cat.open_session("S02", "R+3")
    assert node["ecg"]["ecg"].chunks is not None  # lazy: dask-backed, nothing read yet
    _assert_same_session(node, local_cat.open_session("S02", "R+3"))


def test_raw_input_hash_of_a_url_store_follows_its_objects(s3_campaign, s3_server):
    """A session's raw input hash (the pipeline's cache key) sees objects change on S3."""
    from cardiolab.pipeline import raw_input_hash

    _, url, options = s3_campaign
    cat = open_catalog(url, storage_options=options)
    before = raw_input_hash(cat, "S01", "L-30")
    assert before == raw_input_hash(cat, "S01", "L-30")
    assert before != raw_input_hash(cat, "S01", "R+3")
    extra = url.replace("data_catalog.yaml", "campaign.zarr/S01/L-30/note.txt")
    fs = s3_server.filesystem()
    fs.pipe(extra.removeprefix("s3://"), b"an object added to the session's raw input")
    try:
        added = raw_input_hash(cat, "S01", "L-30")
        fs.pipe(extra.removeprefix("s3://"), b"the same object, changed")
        changed = raw_input_hash(cat, "S01", "L-30")
    finally:
        fs.rm(extra.removeprefix("s3://"))
    assert len({before, added, changed}) == 3
    assert raw_input_hash(cat, "S01", "L-30") == before


def test_missing_catalog_at_a_url_is_a_clear_error(s3_campaign, s3_server):
    _, url, _ = s3_campaign
    wrong = {"key": "x", "secret": "y", "client_kwargs": {"endpoint_url": s3_server.endpoint_url}}
    missing = url.replace("data_catalog.yaml", "nothing.yaml")
    with pytest.raises(CatalogError, match="catalog file not found") as err:
        open_catalog(missing, storage_options=wrong)
    assert err.value.file == missing


def test_storage_options_section_reaches_the_readers(s3_campaign, s3_server, tmp_path, monkeypatch):
    local, url, options = s3_campaign
    _set_credentials(monkeypatch, options)
    path = _remote_catalog(local, url, tmp_path, s3_server.endpoint_url)
    cat = open_catalog(path)  # no options given: the section's, expanded
    assert cat.storage_options == options
    assert cat.store_path == url.replace("data_catalog.yaml", "campaign.zarr")
    _assert_same_session(
        cat.open_session("S01", "L-30"),
        open_catalog(local / "data_catalog.yaml").open_session("S01", "L-30"),
    )
    # the model keeps the references: nothing written back holds the credentials
    assert cat.model.storage_options["secret"] == "${%s}" % VARS["secret"]
    dumped = yaml.safe_dump(cat.model.model_dump(mode="json"))
    shown = [repr(cat), repr(cat.spec), str(cat.spec), dumped]
    for text in shown:
        assert options["secret"] not in text and options["key"] not in text
    assert "secret" in repr(cat.spec) and "client_kwargs.endpoint_url" in repr(cat.spec)


def test_given_options_merge_over_the_section(s3_campaign, s3_server, tmp_path, monkeypatch):
    local, url, options = s3_campaign
    _set_credentials(monkeypatch, options)
    # the section names a closed port; the option given wins, key by key
    path = _remote_catalog(local, url, tmp_path, "http://127.0.0.1:9")
    monkeypatch.setenv("CARDIOLAB_TEST_S3_ENDPOINT", "http://127.0.0.1:9")
    retries = {"retries": {"max_attempts": 2}}  # botocore rewrites this mapping in place
    given = {"client_kwargs": {"endpoint_url": s3_server.endpoint_url}, "config_kwargs": retries}
    as_given = {"client_kwargs": {"endpoint_url": s3_server.endpoint_url}, "config_kwargs": retries}
    expected = {**options, "config_kwargs": {"retries": {"max_attempts": 2}}}
    cat = open_catalog(path, storage_options=given)
    assert cat.storage_options == expected
    assert int(cat.open_session("S02", "L-30")["ecg"].sizes["time"]) > 0
    assert cat.storage_options == expected and cat.spec.storage_options == expected
    assert given == as_given and retries == {"retries": {"max_attempts": 2}}  # not changed


def test_spec_opens_the_catalog_without_its_environment(
    s3_campaign, s3_server, tmp_path, monkeypatch
):
    local, url, options = s3_campaign
    _set_credentials(monkeypatch, options)
    path = _remote_catalog(local, url, tmp_path, s3_server.endpoint_url)
    spec = pickle.loads(pickle.dumps(open_catalog(path).spec))  # as a dask task gets it
    for var in VARS.values():
        monkeypatch.delenv(var)
    with pytest.raises(CatalogError, match=VARS["secret"]):
        open_catalog(path)  # by path, the references cannot be expanded here
    assert isinstance(spec, CatalogSpec) and spec.url == str(path)
    cat = open_catalog(spec)
    assert cat.storage_options == options
    _assert_same_session(
        cat.open_session("S01", "R+3"),
        open_catalog(local / "data_catalog.yaml").open_session("S01", "R+3"),
    )


def test_unset_credential_variable_names_the_option(tmp_path, monkeypatch):
    local_dir = tmp_path / "c"
    local_dir.mkdir()
    monkeypatch.delenv("CARDIOLAB_TEST_UNSET", raising=False)
    path = _minimal_catalog(
        local_dir, {"client_kwargs": {"endpoint_url": "${CARDIOLAB_TEST_UNSET}"}}
    )
    with pytest.raises(CatalogError) as err:
        open_catalog(path, check_files=False)
    assert err.value.file == str(path)
    assert err.value.entry == "storage_options"
    assert err.value.field == "client_kwargs.endpoint_url"
    assert "CARDIOLAB_TEST_UNSET" in str(err.value)


@pytest.mark.parametrize("key", ["secret", "key", "token"])
def test_literal_credentials_are_refused_without_echo(tmp_path, key):
    path = _minimal_catalog(tmp_path, {key: "s3cr3t-literal-value", "anon": False})
    with pytest.raises(CatalogError) as err:
        open_catalog(path, check_files=False)
    text = str(err.value)
    assert err.value.entry == "storage_options"
    assert "${VAR}" in text and key in text
    assert "s3cr3t-literal-value" not in text


def _minimal_catalog(folder, storage_options):
    data = {
        "version": 1,
        "campaign": {"name": "t", "kind": "spaceflight"},
        "derived": "derived.zarr",
        "store": "campaign.zarr",
        "subjects": [{"code": "S01"}],
        "sessions": [{"subject": "S01", "label": "L-30"}],
        "storage_options": storage_options,
    }
    path = folder / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _cli_options(options):
    return [
        "--storage-option",
        f"key={options['key']}",
        "--storage-option",
        f"secret={options['secret']}",
        "--storage-option",
        f"client_kwargs.endpoint_url={options['client_kwargs']['endpoint_url']}",
    ]


def test_cli_info_and_validate_over_s3(s3_campaign, capsys):
    _, url, options = s3_campaign
    assert main(["info", url, *_cli_options(options)]) == 0
    out = capsys.readouterr().out
    assert "2 subjects x 2 session labels, 4 sessions" in out
    assert main(["validate", url, *_cli_options(options)]) == 0
    assert "4 of 4 sessions follow the data model" in capsys.readouterr().out


def test_cli_unreachable_endpoint_is_a_clean_error(s3_campaign, capsys, monkeypatch):
    _, url, options = s3_campaign
    # a closed loopback port: the error names the catalog, without a traceback
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    given = ["--storage-option", "client_kwargs.endpoint_url=http://127.0.0.1:9"]
    assert (
        main(
            [
                "info",
                url,
                *given,
                "--storage-option",
                "key=a",
                "--storage-option",
                "secret=b",
                "--storage-option",
                "config_kwargs.retries.max_attempts=1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("cardiolab info: error: ") and url in err
    assert "Traceback" not in err


def _local_copy(local, tmp_path):
    """The campaign's catalog with its data where it was made and a derived store of
    its own under ``tmp_path``."""
    folder = tmp_path / "local"
    folder.mkdir()
    data = yaml.safe_load((local / "data_catalog.yaml").read_text())
    data.update(data_root=str(local), derived=str(folder / "derived.zarr"))
    path = folder / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _assert_same_table(remote, local, keys):
    """Two tables equal: the same rows (``keys``), numbers within 1e-9, NaN where NaN."""
    assert remote.shape == local.shape and remote.shape[0] > 0
    for key in keys:
        assert list(remote[key].astype(str)) == list(local[key].astype(str)), key
    numbers = local.select_dtypes("number").columns
    assert len(numbers) > 0
    np.testing.assert_allclose(
        remote[numbers].to_numpy(float), local[numbers].to_numpy(float), rtol=0, atol=1e-9
    )
    np.testing.assert_array_equal(remote[numbers].isna(), local[numbers].isna())


@pytest.mark.slow
def test_process_on_s3_in_a_worker_process(s3_campaign, s3_server, tmp_path, monkeypatch):
    """The catalog's options reach a dask worker process: raw and derived store on S3."""
    from distributed import Client, LocalCluster

    from cardiolab.pipeline import features_table, process_campaign

    local, url, options = s3_campaign
    _set_credentials(monkeypatch, options)
    derived = url.replace("data_catalog.yaml", "derived-worker.zarr")
    path = _remote_catalog(local, url, tmp_path, s3_server.endpoint_url, derived=derived)
    cat = open_catalog(path)
    assert cat.derived_path == derived
    for var in VARS.values():  # the worker cannot take them from its environment
        monkeypatch.delenv(var)
    session = [("S01", "L-30")]
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        with Client(cluster) as client:
            report = process_campaign(cat, client=client, sessions=session, progress=False)
    assert len(report.failures) == 0, report.failures.to_string()
    assert s3_server.filesystem().ls(derived.removeprefix("s3://"))  # written there
    here = open_catalog(_local_copy(local, tmp_path))
    process_campaign(here, client="sync", sessions=session, progress=False)
    remote_table, local_table = features_table(cat), features_table(here)
    _assert_same_table(remote_table, local_table, ["subject", "session", "epoch"])
    assert remote_table["hr"].notna().sum() >= 2  # the epochs' heart rates are there


@pytest.mark.slow
def test_cli_process_fit_and_dashboard_on_s3_equal_a_local_run(
    s3_campaign, s3_server, tmp_path, capsys
):
    """``cardiolab process`` and ``fit`` with the catalog, raw and derived store on S3."""
    from cardiolab.pipeline import features_table
    from cardiolab.stats.results import read_results

    local, url, options = s3_campaign
    here = _local_copy(local, tmp_path)
    given = _cli_options(options)
    for argv in (
        ["process", url, "--workers", "0", "--quiet", *given],
        ["fit", url, "--workers", "0", "--quiet", "--features", "hr", "sbp", *given],
        ["process", str(here), "--workers", "0", "--quiet"],
        ["fit", str(here), "--workers", "0", "--quiet", "--features", "hr", "sbp"],
    ):
        assert main(argv) == 0, (argv[:2], capsys.readouterr().err[-2000:])
    out = capsys.readouterr().out
    assert "4 processed, 0 unchanged (cached), 0 failed" in out
    cat = open_catalog(url, storage_options=options)
    local_cat = open_catalog(here)
    assert cat.derived_path == url.replace("data_catalog.yaml", "derived.zarr")
    assert s3_server.filesystem().ls(cat.derived_path.removeprefix("s3://"))
    _assert_same_table(
        features_table(cat), features_table(local_cat), ["subject", "session", "epoch"]
    )
    remote_fit = read_results(cat.derived_path, storage_options=cat.storage_options)
    local_fit = read_results(local_cat.derived_path)
    keys = [c for c in ("feature", "epoch", "model", "term") if c in local_fit]
    _assert_same_table(remote_fit, local_fit, keys)
    # the served dashboard (Session review, Cohort) shows the same data as a local one
    for page in ("session", "cohort"):
        remote_page, local_page = _served_page(cat, page), _served_page(local_cat, page)
        assert len(remote_page) > 10, page  # traces, rasters, tables
        assert [key for key, _ in remote_page] == [key for key, _ in local_page], page
        for (key, a), (_, b) in zip(remote_page, local_page, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=f"{page} {key}")


def _pull_models(url: str) -> list:
    """The models of a served page, pulled with a Bokeh client session.

    The client runs its own event loop; an earlier test (the browser tests) may leave
    one running in this thread, so it is pulled from a thread of its own."""
    from concurrent.futures import ThreadPoolExecutor

    from bokeh.client import pull_session

    def pull():
        with pull_session(url=url) as session:
            return list(session.document.models)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(pull).result(timeout=300)


def _served_page(cat, page: str) -> list:
    """Serve the dashboard on a loopback port, open ``page`` as a browser would (a
    Bokeh client session) and summarise its data: for every column of every data
    source, ``((columns, column, length), [sum, sum of squares])``, sorted. Raises if
    the page shows a traceback."""
    import html
    import socket

    from cardiolab.dashboards import serve

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = serve(cat, port=port, threaded=True, warm=False)
    try:
        for _ in range(100):  # the thread starts listening
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        models = _pull_models(f"http://127.0.0.1:{port}/{page}")
    finally:
        server.stop()
    failed = [
        html.unescape(str(getattr(m, "text", "")))[-500:]
        for m in models
        if "Traceback" in html.unescape(str(getattr(m, "text", "")))
        or "alert-danger" in (getattr(m, "css_classes", None) or [])
    ]
    assert not failed, failed  # a traceback, or the page's error alert
    out = []
    for m in models:
        data = getattr(m, "data", None)
        if type(m).__name__ != "ColumnDataSource" or not data:
            continue
        columns = ",".join(sorted(data))
        for name, values in data.items():
            try:
                arr = np.asarray(values, dtype=float)
            except (TypeError, ValueError):
                continue  # labels
            out.append(((columns, name, arr.size), [np.nansum(arr), np.nansum(arr**2)]))
    return sorted(out, key=lambda item: (item[0], item[1]))


@pytest.mark.parametrize(
    ("name", "fmt", "channels", "options"),
    [
        ("mitdb/100", "wfdb", {"MLII": {"group": "ecg"}}, {}),  # a record: .hea, .dat, .atr
        ("acq/r42_test.acq", "acq", {"ECG (.05 - 150 Hz)": {"group": "ecg"}}, {}),
    ],
    ids=["wfdb record", "biopac acq"],
)
def test_raw_files_at_a_url_read_as_the_local_file(
    name, fmt, channels, options, shared_data, s3_server, tmp_path, monkeypatch
):
    """EDF/WFDB/CSV/ACQ readers read local files: a file or record at a URL is copied to
    the cache (fsspec filecache) and reads equal to the local file; a missing one is an
    error naming the URL."""
    from cardiolab.io import read_session
    from cardiolab.io.remote import cache_folder

    monkeypatch.setenv("CARDIOLAB_CACHE", str(tmp_path / "cache"))
    bucket = s3_server.new_bucket()
    fs = s3_server.filesystem()
    local = shared_data / name
    for path in [local] if local.is_file() else sorted(local.parent.glob(local.name + ".*")):
        fs.put_file(str(path), f"{bucket}/raw/{path.relative_to(shared_data)}")
    url = f"s3://{bucket}/raw/{name}"
    opts = s3_server.storage_options
    remote = read_session(url, fmt, channels=channels, storage_options=opts, **options)
    here = read_session(local, fmt, channels=channels, **options)
    _assert_same_session(remote.compute(), here.compute())
    assert cache_folder().is_relative_to(tmp_path / "cache")
    assert any(cache_folder().rglob("*"))
    with pytest.raises(SessionFormatError, match=f"s3://{bucket}/raw/nothing-here: no such"):
        read_session(
            f"s3://{bucket}/raw/nothing-here", fmt, channels=channels, storage_options=opts
        )


def test_a_changed_remote_file_is_copied_again(s3_server, tmp_path, monkeypatch):
    """The cached copy of a remote raw file follows the object: changed, copied again."""
    from cardiolab.io.remote import local_copy

    monkeypatch.setenv("CARDIOLAB_CACHE", str(tmp_path / "cache"))
    bucket = s3_server.new_bucket()
    fs = s3_server.filesystem()
    url = f"s3://{bucket}/raw/session.csv"
    fs.pipe(url.removeprefix("s3://"), b"time,ecg\n0,1\n")
    first = local_copy(url, s3_server.storage_options)
    assert first.read_bytes() == b"time,ecg\n0,1\n"
    fs.pipe(url.removeprefix("s3://"), b"time,ecg\n0,2\n0.002,3\n")
    assert local_copy(url, s3_server.storage_options).read_bytes() == b"time,ecg\n0,2\n0.002,3\n"


def test_netcdf_campaign_file_at_a_url_reads_as_the_local_file(s3_server, tmp_path, monkeypatch):
    """A netCDF (HDF5) campaign file at a URL: read from its cached copy, equal to the
    local read."""
    import xarray as xr
    from sessions import make_session

    from cardiolab.io import read_session, write_campaign_netcdf

    monkeypatch.setenv("CARDIOLAB_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "c.nc"
    write_campaign_netcdf(xr.DataTree.from_dict({"S01/L-30": make_session(seconds=20)}), local)
    bucket = s3_server.new_bucket()
    s3_server.filesystem().put_file(str(local), f"{bucket}/c.nc")
    opts = s3_server.storage_options
    remote = read_session(f"s3://{bucket}/c.nc", "netcdf", group="S01/L-30", storage_options=opts)
    here = read_session(local, "netcdf", group="S01/L-30")
    _assert_same_session(remote.compute(), here.compute())


# --- the chunk check of a session over S3 (check_zarr_chunks) -----------------------------

GROUP = "S01/L-30"


@pytest.fixture
def s3_store(s3_campaign, s3_server):
    """``(URL, local store, storage options)``: the campaign's zarr store copied to a
    bucket of its own, for a test to damage."""
    local, _, options = s3_campaign
    bucket = s3_server.new_bucket()
    s3_server.filesystem().put(
        str(local / "campaign.zarr"), f"{bucket}/campaign.zarr", recursive=True
    )
    return f"s3://{bucket}/campaign.zarr", local / "campaign.zarr", options


def _nchunks(local_store, array: str) -> int:
    """zarr's own count of an array's chunk grid, in the local copy of the store."""
    import zarr

    return zarr.open_array(local_store / GROUP / array, mode="r").nchunks


def test_chunk_check_over_s3_names_the_array_missing_a_chunk(s3_store, s3_server):
    url, local, options = s3_store
    check_zarr_chunks(url, GROUP, storage_options=options)  # intact: no error
    fs = s3_server.filesystem()
    chunks = sorted(fs.find(f"{url}/{GROUP}/ecg/ecg/c".removeprefix("s3://")))
    n = _nchunks(local, "ecg/ecg")
    assert len(chunks) == n
    fs.rm(chunks[-1])
    with pytest.raises(SessionFormatError) as err:
        check_zarr_chunks(url, GROUP, storage_options=options)
    assert str(err.value).startswith(f"{url}: chunks missing from the zarr store")
    assert err.value.violations == [f"{url}: array '{GROUP}/ecg/ecg' has {n - 1} of its {n} chunks"]
    with pytest.raises(SessionFormatError, match=f"has {n - 1} of its {n} chunks"):
        read_zarr_session(url, GROUP, storage_options=options)  # checked on opening


@pytest.mark.parametrize("deleted", ["abp", "ecg/time"], ids=lambda d: f"deleted {d}")
def test_chunk_check_over_s3_names_a_deleted_array_or_group(s3_store, s3_server, deleted):
    """The store's root metadata still lists what was deleted: each of its arrays is
    named, with none of its chunks."""
    url, local, options = s3_store
    s3_server.filesystem().rm(f"{url}/{GROUP}/{deleted}".removeprefix("s3://"), recursive=True)
    arrays = ["abp/abp", "abp/time"] if deleted == "abp" else [deleted]
    with pytest.raises(SessionFormatError) as err:
        check_zarr_chunks(url, GROUP, storage_options=options)
    assert err.value.violations == [
        f"{url}: array '{GROUP}/{a}' has 0 of its {_nchunks(local, a)} chunks" for a in arrays
    ]


def test_chunk_check_over_s3_is_one_list_request_per_session(s3_store, s3_server):
    """One LIST request (of the session's prefix) for the session's every array; the
    previous check (each array's nchunks_initialized) made one per array."""
    import zarr

    url, local, options = s3_store
    check_zarr_chunks(url, GROUP, storage_options=options)  # the root metadata parsed
    with s3_server.recording() as requests:
        check_zarr_chunks(url, GROUP, storage_options=options)
    lists = [r for r in requests if r.is_list]
    bucket, key = url.removeprefix("s3://").split("/", 1)
    assert [(r.path, r.query["prefix"]) for r in lists] == [(f"/{bucket}", [f"{key}/{GROUP}/"])]
    session = zarr.open_group(local / GROUP, mode="r")
    n_arrays = sum(isinstance(a, zarr.Array) for _, a in session.members(max_depth=None))
    assert n_arrays >= 10
    assert len(requests) <= 2  # and the root metadata's HEAD (has the store changed?)
    # the whole opening too: the session group is opened as a store of the root's zarr
    # format, so zarr does not look for the other format's files (a LIST for each)
    read_zarr_session(url, GROUP, storage_options=options)
    with s3_server.recording() as opening:
        read_zarr_session(url, GROUP, storage_options=options)
    assert [r.query["prefix"] for r in opening if r.is_list] == [[f"{key}/{GROUP}/"]]
