"""Shared fixtures: reference data location and a small simulated campaign."""

import pytest
from reference_data import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data():
    """The shared reference data folder; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found: the reference recordings are not available")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_campaign(tmp_path_factory):
    """A 3-subject spaceflight campaign of 2-minute sessions, and its truth."""
    from cardiolab.simulate import simulate_campaign

    path = tmp_path_factory.mktemp("campaign") / "sim"
    truth = simulate_campaign(
        path,
        n_subjects=3,
        schedule=["L-30", "FD10", "R+6h", "R+3"],
        duration_min=2,
        seed=7,
        workers=1,
        progress=False,
    )
    return path, truth


@pytest.fixture(scope="session")
def real_campaign(shared_data, tmp_path_factory):
    """The README's real-recordings catalog, processed by ``cardiolab process``.

    Returns ``(catalog path, environment, the process command's CompletedProcess)``.
    The catalog's variables (data root, derived store) are also set in this process
    for the session, so that in-process reads see the campaign the commands saw.
    """
    from real_campaign import cardiolab, write_real_catalog

    catalog, env = write_real_catalog(tmp_path_factory.mktemp("real") / "campaign", shared_data)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("CARDIOLAB_SHARED_DATA", "CARDIOLAB_DERIVED"):
            mp.setenv(name, env[name])
        done = cardiolab("process", catalog, "--quiet", env=env)
        yield catalog, env, done


@pytest.fixture(scope="session")
def s3_server():
    """A loopback S3-compatible server (moto's server mode; :mod:`s3`) for the session.

    Skips the test where moto (with its server extra) or s3fs is not installed.
    """
    from s3 import start_s3_server

    try:
        server = start_s3_server()
    except ImportError as err:
        pytest.skip(
            f"no loopback S3 server: {err.name or err} is not installed "
            '(pip install -e ".[dev]" installs moto[server] and s3fs)'
        )
    yield server
    server.server.stop()
