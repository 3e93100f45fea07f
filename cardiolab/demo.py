"""The built-in demo campaign, ready to use: generated and processed on first call.

Notebooks and examples start with ``catalog = demo_catalog()``: the simulated
campaign (8 subjects x 10 sessions, Cardiospace-like protocol) is generated in the
user's cache (``$CARDIOLAB_DEMO_DIR`` or ``~/.cache/cardiolab/demo``) the first time,
processed into beats and features, and reused afterwards (processing is cached on the
raw input's hash, so a second call costs about a second).
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("cardiolab")

__all__ = ["clear_old_derived", "demo_catalog"]


def clear_old_derived(catalog) -> bool:
    """Delete the demo's derived results when an older cardiolab wrote them.

    The demo's derived store is cardiolab's own cache, made from the demo's raw store:
    a store of an older layout (which :func:`cardiolab.pipeline.process_campaign`
    refuses) is removed so that it is rebuilt, instead of failing.

    Parameters
    ----------
    catalog : str or pathlib.Path
        The demo campaign's catalog.

    Returns
    -------
    bool
        Whether an old store was removed.
    """
    from .catalog import open_catalog
    from .derived import derived_store
    from .errors import CardiolabError

    store = derived_store(open_catalog(catalog))
    try:
        store.check_format()
    except CardiolabError:
        log.warning("demo: derived results in %s are of an older layout; rebuilding", store.url)
        store.fs.rm(store.root, recursive=True)
        return True
    return False


def demo_catalog(
    path=None,
    *,
    n_subjects: int = 8,
    process: bool = True,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """The demo campaign's catalog path, generating and processing it if needed.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        Folder of the demo campaign (default: :func:`cardiolab.cli.default_demo_dir`).
    n_subjects : int
        Subjects, when the campaign has to be generated.
    process : bool
        Also process it (beats and features), with a dask LocalCluster.
    workers : int, optional
        Workers of that cluster (default: the machine's cores; 0: in this process).
    progress : bool
        Progress bars.

    Returns
    -------
    pathlib.Path
        ``<path>/data_catalog.yaml``.

    Examples
    --------
    >>> from cardiolab.demo import demo_catalog
    >>> from cardiolab.pipeline import features_table
    >>> table = features_table(demo_catalog())  # doctest: +SKIP
    """
    from .cli import default_demo_dir
    from .paths import expand_path
    from .simulate import simulate_campaign
    from .simulate.campaign import CATALOG_NAME, MEASUREMENTS_NAME, STORE_NAME

    folder = Path(expand_path(str(path))) if path is not None else default_demo_dir()
    catalog = folder / CATALOG_NAME
    present = catalog.exists() and (folder / STORE_NAME).exists()
    # a demo generated before the simulator wrote a measurement table is made anew
    stale = present and not (folder / MEASUREMENTS_NAME).exists()
    if not present or stale:
        log.info("generating the demo campaign in %s", folder)
        simulate_campaign(folder, n_subjects=n_subjects, progress=progress, overwrite=stale)
    if process:
        from .pipeline import process_campaign

        clear_old_derived(catalog)
        report = process_campaign(
            catalog,
            client="sync" if workers == 0 else None,
            workers=workers or None,
            progress=progress,
        )
        if len(report.failures):
            log.warning("demo campaign: %d sessions failed to process", len(report.failures))
    return catalog
