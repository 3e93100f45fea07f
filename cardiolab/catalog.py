"""Campaign catalogs: ``data_catalog.yaml`` schema, validation and path resolution.

A catalog names the campaign, its subjects, its sessions and the files that hold each
session, and says where derived results go. :func:`open_catalog` validates it whole
(pydantic models that refuse unknown keys, then checks across entries and on disk) and
raises one :class:`~cardiolab.errors.CatalogError` naming the catalog file, the entry
(``sessions[3] (S01 L-30)``) and the field (``files[0].channels.ECG II.units``) of
every fault, one per line. :class:`Catalog` then opens sessions lazily into the
session data model (:mod:`cardiolab.schema`).

Format (version 1)::

    version: 1
    campaign:
      name: tg2-cardio
      kind: spaceflight             # spaceflight | bedrest | confinement
      launch: 2026-03-02            # bedrest: start / end (head-down tilt) instead
      landing: 2026-04-01
    data_root: .                    # base of relative paths (default: the catalog's folder)
    derived: derived.zarr           # where derived results go (required)
    store: campaign.zarr            # optional native store for sessions without `files`
    protocols:
      supine-stand:
        posture: supine             # posture of the baseline epoch
        epochs: [{label: supine, start: 0, stop: 300}, {label: stand, start: 300, stop: 600}]
    default_protocol: supine-stand  # optional when there is exactly one protocol
    subjects: [{code: S01, sex: F, age_band: 30-39}]
    sessions:
      - subject: S01
        label: R+1
        files:
          - path: raw/S01_R+1.edf
            format: edf             # zarr | netcdf | edf (EDF, BDF) | wfdb | csv
            channels: {"ECG II": {group: ecg, units: uV}, "Doppler FA": {group: doppler, vessel: femoral}}
          - path: raw/S01_R+1_ldf.csv
            format: csv
            sampling_rate: 40       # csv only: sampling_rate (Hz), time_column, time_units,
            decimal: ","            #   decimal ("." or ","), separator ("," ";" tab " " "|")
            separator: ";"
            channels: {flux: {group: ldf, units: PU}}

A channel is found by its name in the file, or by its 0-based position among the
file's signals (columns) with ``index`` (``{"ECG": {group: ecg, index: 2}}``): needed
where the file holds a name twice, or has no names. EDF+/BDF+ annotation signals are
not counted; a CSV's time column is (it is a column).

Paths
-----
``data_root`` and every path may use ``~``, ``${VAR}`` and ``${VAR:-default}``; a
``${VAR}`` without default whose variable is unset is an error. Relative paths are
relative to ``data_root``, and a relative ``data_root`` to the catalog's folder.
fsspec URLs (anything containing ``://``: ``s3://…``, ``memory://…``) are kept as
strings and handed to the readers as they are; their existence is **not** checked
when the catalog is opened (only local files and the local native store are), so a
missing remote file is reported when its session is opened.

Every local path (``files[].path``, ``store``, ``derived``, ``measurements[].path``;
``file://`` URLs too) must resolve inside the catalog's **data roots**: the catalog's
folder, its ``data_root``, and the folders listed under ``data_roots`` (relative ones
to the catalog's folder)::

    data_roots: [/mnt/holter, ../shared/raw]   # other folders the catalog may read

A path outside them (``../../../../etc/passwd``, ``/etc/passwd``) is a
:class:`~cardiolab.errors.CatalogError` naming the entry and field, so that a catalog
cannot make cardiolab read (and show in its messages) files its owner did not put in
reach. Paths are compared after ``..`` is resolved, not after symbolic links are
followed: a link inside a data root (a data disk linked into the campaign folder) is
the folder owner's choice and is followed.

Object storage
--------------
The catalog itself may be at a URL (``open_catalog("s3://bucket/tg2/data_catalog.yaml",
storage_options=...)``); its relative paths (and a relative ``data_root``) then resolve
against the catalog's URL folder (``s3://bucket/tg2/``). The fsspec options of every raw
and derived path of a catalog come from its ``storage_options`` section, with the
``storage_options=`` given to :func:`open_catalog` (or ``--storage-option`` on the
command line) merged over it, key by key (nested mappings such as ``client_kwargs``
too)::

    storage_options:
      client_kwargs: {endpoint_url: "${S3_ENDPOINT:-https://s3.example.org}"}
      key: ${S3_KEY}                # credentials: ${VAR} references only
      secret: ${S3_SECRET}

Credentials (:data:`cardiolab.storage_options.CREDENTIAL_KEYS`: ``key``, ``secret``,
``token``, ...) must be ``${VAR}`` references: the catalog is shared, its values are not
secret. References are expanded when the catalog is opened (an unset ``${VAR}`` without
default is an error naming the option); the expanded values live only in
:attr:`Catalog.storage_options` and :attr:`Catalog.spec`, are never written back and
never shown in errors or reprs (those name the options, not their values). Reading an
``s3://`` catalog itself needs the options given to :func:`open_catalog`, since its
section is inside it. Dask tasks receive :attr:`Catalog.spec` (the catalog's location
and its expanded options), so workers need neither the catalog's variables nor a copy of
the options.

Protocols
---------
A session's protocol is its ``protocol``, else ``default_protocol``, else the only
protocol of the catalog. The catalog's protocol replaces any ``protocol`` group a file
holds; a session with no catalog protocol (several protocols, no default) keeps the
protocol its file records (EDF+ annotations, WFDB annotations, native stores).

A protocol declares its **challenges** (:class:`Challenge`); a session its marked
**events** (seconds from its start)::

    protocols:
      tilt:
        posture: supine
        epochs: [{label: rest, start: 0, stop: 600}, {label: hut80, start: 600, stop: 2400}]
        challenges:
          - name: tilt              # response name (default: <challenge>-<baseline>)
            kind: tilt              # generic | orthostatic | tilt | lbnp | paced_breathing |
                                    # valsalva | porh | local_heating
            baseline: rest
            challenge: hut80        # an epoch, or a list of steps (LBNP: one response each)
            windows: {first30: [0, 30], last60: [-60, 0]}  # s from its start; <0: its end
            event: presyncope       # the event that ends it early (tolerance)
      porh:
        posture: supine
        epochs: [{label: base, ...}, {label: occlusion, ...}, {label: release, ...}]
        challenges:
          - {kind: porh, baseline: base, occlusion: occlusion, challenge: release}
          # local_heating: baseline, challenge (42 degC) and optional maximal (44 degC)
    sessions:
      - {subject: S01, label: R+0, protocol: tilt, events: [{label: presyncope, time: 1712}]}

Every epoch a challenge names must be in its protocol (else a :class:`CatalogError`
naming the protocol, challenge and epoch). The processed features then hold one row
per challenge response and :func:`cardiolab.pipeline.responses_table` every response
(absolute and percent, windows, steps) with the outcomes of its kind
(:mod:`cardiolab.features.challenges`).

Review
------
A campaign whose beat changes need a second reviewer says so::

    review:
      confirmations: 2

(default 1). See :class:`Review` and :mod:`cardiolab.annotations`.

Measurements
------------
Values taken once per session (ultrasound, laboratory) come in tables listed under
``measurements``, each a CSV (optional ``separator``, ``decimal``) or Excel file
(optional ``sheet``: name or 0-based position)::

    measurements:
      - {path: ultrasound.csv}
      - {path: lab/vessels.xlsx, sheet: visits}

Their layout (``subject``, ``session``, optional ``epoch``, one column per quantity,
units in the header or a units row) is described in :mod:`cardiolab.measurements`.
:func:`open_catalog` reads local tables and checks every row: a subject not declared,
a session not in the catalog, an epoch not in the session's protocol, a unit not in
:mod:`cardiolab.units`, a cell that is not a number, a row given twice (in one table,
or a value given by two tables), each named by table file, row and column. Tables at
URLs (and all tables when ``check_files=False``) are read and checked when
:attr:`Catalog.measurements` is first used. Rows without an epoch hold values of the
whole session (epoch ``"session"``,
:data:`cardiolab.measurements.SESSION_EPOCH`). A quantity given in two tables takes
the unit of the first; the second's values are converted (mm and cm, mm2 and cm2).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import functools
import json
import logging
import os
import posixpath
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import xarray as xr
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from .errors import CatalogError, SessionFormatError, UnitError
from .features.challenges import CHALLENGE_KINDS, response_names
from .io.csv_export import DECIMAL_MARKS, SEPARATORS
from .io.registry import file_formats, get_format, option_formats
from .labels import LabelError, parse_session_label, schedule_order
from .measurements import SESSION_EPOCH, read_measurement_table, table_format
from .paths import expand_path, is_url
from .schema import BEAT_FIELDS, BEAT_GROUP, RAW_GROUPS, protocol_group, validate_session
from .storage_options import (
    CREDENTIAL_KEYS,
    expand_storage_options,
    merge_storage_options,
    option_names,
)
from .units import UNIT_FACTORS, conversion_factor, normalise_unit, unit_ratio

__all__ = [
    "Catalog",
    "CatalogModel",
    "CatalogSpec",
    "as_catalog",
    "open_catalog",
    "write_catalog",
]

log = logging.getLogger("cardiolab")

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_AGE_BAND = re.compile(r"^(\d{1,3})-(\d{1,3})$|^(\d{1,3})\+$")
_UNSET_VAR = re.compile(r"\$\{(\w+)\}")
_SCHEDULE_LABELS = {
    "spaceflight": "L-<days>, FD<day>, R+<days>",
    "bedrest": "BDC-<days>, HDT<day>, R+<days>",
}


# --- the schema -------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ChannelMap(_Model):
    """Where one channel of a file goes in the data model: a waveform group, or a beat
    variable of the ``beats`` group (beat-to-beat exports)."""

    group: Literal[(*RAW_GROUPS, BEAT_GROUP)]  # type: ignore[valid-type]
    variable: str | None = Field(default=None, validate_default=True)
    units: str | None = None
    vessel: str | None = Field(default=None, validate_default=True)
    index: int | None = Field(default=None, ge=0)

    @field_validator("variable")
    @classmethod
    def _variable(cls, value, info: ValidationInfo):
        group = info.data.get("group")
        if group == "beats" and value not in BEAT_FIELDS:
            raise ValueError(
                f"a beats channel needs a 'variable' (one of {sorted(BEAT_FIELDS)}), not {value!r}"
            )
        if group is not None and group != "beats" and value is not None:
            raise ValueError(f"'variable' is only for beats channels, not {group}")
        return value

    @field_validator("units")
    @classmethod
    def _known_unit(cls, value, info: ValidationInfo):
        if value is None:
            return value
        try:
            normalise_unit(value)
            group = info.data.get("group")
            if group == "beats":
                variable = info.data.get("variable")
                if variable in BEAT_FIELDS:
                    unit_ratio(value, BEAT_FIELDS[variable][0])
            elif group is not None:
                conversion_factor(value, group)
        except UnitError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("vessel")
    @classmethod
    def _vessel(cls, value, info: ValidationInfo):
        group = info.data.get("group")
        if group == "doppler" and not value:
            raise ValueError("a doppler channel needs a 'vessel' (e.g. femoral, mca)")
        if group is not None and group != "doppler" and value is not None:
            raise ValueError(f"'vessel' is only for doppler channels, not {group}")
        return value


def _option_applies(cls, value, info: ValidationInfo):
    """A format option: the entry's format must declare it, and its check passes."""
    if value is None:
        return value
    fmt = info.data.get("format")
    if fmt is None:  # the format is wrong: its own error says so
        return value
    declared = get_format(fmt).option(info.field_name)
    if declared is None:
        owners = option_formats()[info.field_name]
        raise ValueError(f"'{info.field_name}' is only for {'/'.join(owners)} files")
    return declared.check(value)


class _FileEntryBase(_Model):
    """One file of a session: the keys every format has."""

    path: str = Field(min_length=1)
    format: str
    channels: dict[str, ChannelMap] | None = Field(default=None, validate_default=True)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value):
        names = [f.name for f in file_formats()]
        if value not in names:
            raise ValueError(f"unknown format: got {value!r} (known: {', '.join(names)})")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value, info: ValidationInfo):
        name = info.data.get("format")
        if name is None:
            return value
        fmt = get_format(name)
        if not fmt.channels and value is not None:
            what = "they are already in the data model" if fmt.native else "it has none"
            raise ValueError(f"'channels' does not apply to {name} files ({what})")
        if fmt.channels and not fmt.channels_optional and not value:
            raise ValueError(f"a {name} file needs 'channels' (file channel -> group)")
        return value


def _file_entry_model() -> type[_FileEntryBase]:
    """The file-entry schema: the common keys plus every option some registered format
    declares (:mod:`cardiolab.io.registry`), each checked by :func:`_option_applies`."""
    names = sorted(option_formats())
    return create_model(
        "FileEntry",
        __base__=_FileEntryBase,
        __doc__="One file of a session (options from the format registry).",
        __validators__={"_option_applies": field_validator(*names)(_option_applies)},
        **{name: (typing.Any, None) for name in names},
    )


#: One file of a session; its options are those the registered formats declare.
FileEntry = _file_entry_model()


class Epoch(_Model):
    """One epoch of a protocol, in seconds from the session start."""

    label: str = Field(min_length=1)
    start: float = Field(ge=0, allow_inf_nan=False)
    stop: float = Field(allow_inf_nan=False)

    @field_validator("stop")
    @classmethod
    def _after_start(cls, value, info: ValidationInfo):
        start = info.data.get("start")
        if start is not None and not value > start:
            raise ValueError(f"stop {value:g} s <= start {start:g} s")
        return value


class Challenge(_Model):
    """A challenge of a protocol: a baseline epoch, a challenge epoch (or steps), windows.

    Its response is computed for every feature (challenge minus baseline, absolute and
    percent; :func:`cardiolab.features.challenge_responses`); ``kind`` adds the outcomes
    of that kind of challenge (:data:`cardiolab.features.CHALLENGE_KINDS`).
    """

    name: str | None = Field(default=None, min_length=1)
    kind: Literal[CHALLENGE_KINDS] = "generic"  # type: ignore[valid-type]
    baseline: str = Field(min_length=1)
    challenge: str | list[str]
    windows: dict[str, tuple[float, float]] = Field(default_factory=dict)
    occlusion: str | None = None
    maximal: str | None = None
    initial_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    recovery_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    event: str = "presyncope"

    @field_validator("challenge")
    @classmethod
    def _steps(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("challenge: give an epoch label or a non-empty list of steps")
        return value

    @field_validator("windows")
    @classmethod
    def _windows(cls, value):
        for name, (a, b) in value.items():
            if not name or ":" in name:
                raise ValueError(f"window name {name!r} must be non-empty without ':'")
            if (a < 0) != (b <= 0) or not b > a:
                raise ValueError(
                    f"window {name!r} [{a:g}, {b:g}] s: give [start, stop] from the challenge "
                    "start (0 <= start < stop) or from its end (start < stop <= 0)"
                )
        return value

    @model_validator(mode="after")
    def _roles(self):
        if self.kind == "porh" and self.occlusion is None:
            raise ValueError("a porh challenge names its occlusion epoch ('occlusion')")
        if self.kind != "porh" and self.occlusion is not None:
            raise ValueError("'occlusion' is for porh challenges")
        if self.kind != "local_heating" and self.maximal is not None:
            raise ValueError("'maximal' is for local_heating challenges")
        if isinstance(self.challenge, list) and self.kind in ("porh", "local_heating"):
            raise ValueError(f"a {self.kind} challenge has one challenge epoch, not steps")
        return self

    @property
    def steps(self) -> list[str]:
        """The challenge epochs (one, or the steps of a stepped challenge such as LBNP)."""
        return list(self.challenge) if isinstance(self.challenge, list) else [self.challenge]

    def epochs_named(self) -> list[str]:
        """Every epoch label the challenge refers to."""
        extra = [e for e in (self.occlusion, self.maximal) if e is not None]
        return [self.baseline, *self.steps, *extra]


class Protocol(_Model):
    """A named protocol: the posture of its baseline, its epochs and its challenges."""

    posture: Literal["supine", "seated", "standing"]
    epochs: list[Epoch] = Field(min_length=1)
    challenges: list[Challenge] = Field(default_factory=list)

    @model_validator(mode="after")
    def _challenge_epochs(self):
        labels = [e.label for e in self.epochs]
        names = []
        for i, c in enumerate(self.challenges):
            for lab in c.epochs_named():
                if lab not in labels:
                    raise ValueError(
                        f"challenges[{i}] ({c.name or c.baseline}): epoch {lab!r} is not in "
                        f"the protocol (epochs: {labels})"
                    )
            names += response_names(c.model_dump())
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"challenges give the same response name twice: {dups}")
        clash = sorted(set(names) & set(labels))
        if clash:
            raise ValueError(f"challenge response names {clash} are also epoch labels")
        return self

    @field_validator("epochs")
    @classmethod
    def _disjoint(cls, epochs):
        labels = [e.label for e in epochs]
        dups = sorted({x for x in labels if labels.count(x) > 1})
        if dups:
            raise ValueError(f"duplicate epoch labels {dups}")
        ordered = sorted(epochs, key=lambda e: e.start)
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.start < a.stop:
                raise ValueError(
                    f"epochs {a.label!r} ({a.start:g}-{a.stop:g} s) and {b.label!r} "
                    f"({b.start:g}-{b.stop:g} s) overlap"
                )
        return epochs


class Subject(_Model):
    """A subject, by pseudonymous code."""

    code: str
    sex: Literal["F", "M", "X"] | None = None
    age_band: str | None = None

    @field_validator("code")
    @classmethod
    def _code(cls, value):
        if not _CODE.match(value):
            raise ValueError(
                f"subject code {value!r} must be a pseudonymous code of letters, digits, "
                "'-' or '_' (e.g. S01)"
            )
        return value

    @field_validator("age_band", mode="before")
    @classmethod
    def _age(cls, value):
        if value is None:
            return value
        text = str(value).strip()
        m = _AGE_BAND.match(text)
        if not m or (m.group(1) and int(m.group(1)) > int(m.group(2))):
            raise ValueError(f"age band {value!r} must look like '30-39' or '60+'")
        return text


class Event(_Model):
    """A marked event of a session (e.g. presyncope), in seconds from the session start."""

    label: str = Field(min_length=1)
    time: float = Field(ge=0, allow_inf_nan=False)


class SessionEntry(_Model):
    """A session: subject, label, protocol, date, files and marked events."""

    subject: str
    label: str
    protocol: str | None = None
    date: dt.date | None = None
    files: list[FileEntry] | None = None
    events: list[Event] = Field(default_factory=list)

    @field_validator("label")
    @classmethod
    def _label(cls, value):
        try:
            return parse_session_label(value).label
        except LabelError as err:
            raise ValueError(str(err)) from None


class Campaign(_Model):
    """The campaign block: name, kind and dates."""

    name: str = Field(min_length=1)
    kind: Literal["spaceflight", "bedrest", "confinement"]
    launch: dt.date | None = None
    landing: dt.date | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    description: str | None = None

    @field_validator("launch", "landing", "start", "end")
    @classmethod
    def _dates(cls, value, info: ValidationInfo):
        if value is None:
            return value
        kind = info.data.get("kind")
        name = info.field_name
        if kind == "bedrest" and name in ("launch", "landing"):
            raise ValueError("a bedrest campaign uses 'start'/'end' (head-down tilt dates)")
        if kind in ("spaceflight", "confinement") and name in ("start", "end"):
            raise ValueError(f"a {kind} campaign uses 'launch'/'landing'")
        first = info.data.get({"landing": "launch", "end": "start"}.get(name, ""))
        if first is not None and value < first:
            raise ValueError(f"{name} {value} is before {first}")
        return value


class MeasurementTableEntry(_Model):
    """A table of per-session measurements (:mod:`cardiolab.measurements`)."""

    path: str = Field(min_length=1)
    sheet: str | Annotated[int, Field(ge=0)] | None = None
    separator: Literal[SEPARATORS] | None = None
    decimal: Literal[DECIMAL_MARKS] | None = None

    @field_validator("path")
    @classmethod
    def _suffix(cls, value):
        try:
            table_format(value)
        except ValueError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("sheet")
    @classmethod
    def _excel_only(cls, value, info: ValidationInfo):
        path = info.data.get("path")
        if value is not None and path is not None and table_format(path) != "excel":
            raise ValueError("'sheet' is only for Excel tables (.xlsx, .xlsm)")
        return value

    @field_validator("separator", "decimal")
    @classmethod
    def _csv_only(cls, value, info: ValidationInfo):
        path = info.data.get("path")
        if value is not None and path is not None and table_format(path) != "csv":
            raise ValueError(f"'{info.field_name}' is only for CSV tables (.csv, .tsv, .txt)")
        return value

    @model_validator(mode="after")
    def _marks(self):
        if self.separator == "," and self.decimal == ",":
            raise ValueError("separator and decimal mark are both ','")
        return self


class Review(_Model):
    """The review block: how many different reviewers a beat change needs.

    ``confirmations: 1`` (default): a reviewer's flag or beat edit takes effect at
    once. ``confirmations: 2`` (two-reviewer mode): it takes effect only once a second,
    different reviewer has confirmed it (:func:`cardiolab.annotations.confirm_change`);
    until then it is pending, and a rejection by another reviewer makes it a
    disagreement, listed on the Campaign page.
    """

    confirmations: Annotated[int, Field(ge=1, le=5)] = 1


class CatalogModel(_Model):
    """A whole catalog (format version 1)."""

    version: Literal[1]
    campaign: Campaign
    data_root: str | None = None
    data_roots: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    derived: str = Field(min_length=1)
    store: str | None = None
    protocols: dict[str, Protocol] = Field(default_factory=dict)
    default_protocol: str | None = None
    subjects: Annotated[list[Subject], Field(min_length=1)]
    sessions: Annotated[list[SessionEntry], Field(min_length=1)]
    measurements: list[MeasurementTableEntry] = Field(default_factory=list)
    review: Review = Field(default_factory=Review)
    storage_options: dict[str, typing.Any] = Field(default_factory=dict)

    @field_validator("storage_options")
    @classmethod
    def _credentials_by_reference(cls, value):
        def walk(options, where):
            for key, item in options.items():
                name = f"{where}.{key}" if where else str(key)
                if isinstance(item, Mapping):
                    walk(item, name)
                elif str(key) in CREDENTIAL_KEYS and not (
                    isinstance(item, str) and "${" in item
                ):  # the value is never echoed: it may be a credential
                    raise ValueError(
                        f"{name}: give credentials as a ${{VAR}} reference (e.g. "
                        f"{key}: ${{S3_{str(key).upper()}}}), not in the catalog"
                    )

        walk(value, "")
        return value


# --- YAML -------------------------------------------------------------------------------


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """A safe loader that refuses duplicate keys (a channel listed twice).

    Built on PyYAML's libyaml parser where the install has it (``CSafeLoader``: a
    large catalog parses some 8 times faster, and every dask task opens its catalog
    again), else on the pure-Python ``SafeLoader``; both give the same data and marks.
    """


def _construct_mapping(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # unhashable key: let the constructor complain
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"duplicate key {key!r} (first given on line {first + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, path: Path):
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise CatalogError(f"YAML syntax error{where}: {detail}", file=path) from None
    if data is None:
        raise CatalogError("not a catalog: the file is empty", file=path)
    if not isinstance(data, dict):
        raise CatalogError(
            "not a catalog: a catalog is a mapping with 'version', 'campaign', 'subjects', "
            f"'sessions', ...; this file holds a {type(data).__name__}",
            file=path,
        )
    if not {"version", "campaign", "subjects", "sessions"} & set(map(str, data)):
        raise CatalogError(
            "not a catalog: none of the keys 'version', 'campaign', 'subjects', 'sessions' "
            f"(found {sorted(map(str, data))[:8]})",
            file=path,
        )
    return data


def _read_yaml(path, storage_options=None):
    """The catalog's YAML data: a local file, or a URL read through fsspec."""
    try:
        if isinstance(path, Path):
            text = path.read_text(encoding="utf-8")
        else:
            text = _read_url_text(path, storage_options)
    except FileNotFoundError:
        raise CatalogError("catalog file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CatalogError(f"cannot read the catalog: {err}", file=path) from None
    return _parse_yaml(text, path)


def _read_url_text(url: str, storage_options) -> str:
    import fsspec

    try:
        options = merge_storage_options(storage_options, None)  # a copy fsspec may change
        with fsspec.open(url, "rt", encoding="utf-8", **options) as f:
            return f.read()
    except (FileNotFoundError, UnicodeDecodeError):
        raise
    except Exception as err:  # fsspec and its backends (s3fs, botocore) raise their own
        raise CatalogError(
            f"cannot read the catalog: {type(err).__name__}: {err} (storage options given: "
            f"{', '.join(option_names(storage_options)) or 'none'})",
            file=url,
        ) from None


# --- errors -----------------------------------------------------------------------------


class _Faults:
    """Collects catalog faults ``(entry, field, message)`` and raises them together."""

    def __init__(self, file):
        self.file = file
        self.items: list[tuple[str | None, str | None, str]] = []

    def add(self, message: str, entry: str | None = None, field: str | None = None):
        self.items.append((entry, field, message))

    def raise_if_any(self):
        if not self.items:
            return
        if len(self.items) == 1:
            entry, field, message = self.items[0]
            err = CatalogError(message, file=self.file, entry=entry, field=field)
        else:
            lines = []
            for entry, field, message in self.items:
                where = ": ".join(p for p in (entry, field) if p)
                lines.append(f"  - {where}: {message}" if where else f"  - {message}")
            err = CatalogError(f"{len(self.items)} problems:\n" + "\n".join(lines), file=self.file)
        err.problems = list(self.items)
        raise err


def _session_entry(index: int, item) -> str:
    if isinstance(item, Mapping):
        return f"sessions[{index}] ({item.get('subject', '?')} {item.get('label', '?')})"
    return f"sessions[{index}]"


def _entry_and_field(data: dict, loc: tuple) -> tuple[str | None, str | None]:
    """Name the entry and the field of a pydantic error location."""
    if not loc:
        return None, None
    head, rest = loc[0], loc[1:]
    if head in ("sessions", "subjects") and rest and isinstance(rest[0], int):
        i = rest[0]
        try:
            item = data[head][i]
        except (KeyError, IndexError, TypeError):
            item = None
        if head == "sessions":
            entry = _session_entry(i, item)
        else:
            code = item.get("code", "?") if isinstance(item, Mapping) else None
            entry = f"subjects[{i}]" + (f" ({code})" if code else "")
        rest = rest[1:]
    elif head == "protocols" and rest:
        entry = f"protocols.{rest[0]}"
        rest = rest[1:]
    elif head == "measurements" and rest and isinstance(rest[0], int):
        try:
            item = data[head][rest[0]]
        except (KeyError, IndexError, TypeError):
            item = None
        path = item.get("path") if isinstance(item, Mapping) else None
        entry = f"measurements[{rest[0]}]" + (f" ({path})" if path else "")
        rest = rest[1:]
    else:
        entry = str(head)
    field = ""
    for part in rest:
        if isinstance(part, int):
            field += f"[{part}]"
        else:
            field += ("." if field else "") + str(part)
    return entry, field or None


def _unwrap(annotation):
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _is_model(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _keys_at(loc: tuple) -> list[str]:
    """The keys the schema allows at a location (for 'did you mean' hints)."""
    annotation = CatalogModel
    for part in loc:
        annotation = _unwrap(annotation)
        origin = typing.get_origin(annotation)
        if _is_model(annotation):
            field = annotation.model_fields.get(part)
            if field is None:
                return []
            annotation = field.annotation
        elif origin is list and isinstance(part, int):
            annotation = typing.get_args(annotation)[0]
        elif origin is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return []
    annotation = _unwrap(annotation)
    return list(annotation.model_fields) if _is_model(annotation) else []


def _message(err: dict) -> str:
    kind = err.get("type")
    loc = tuple(err.get("loc", ()))
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        allowed = _keys_at(loc[:-1])
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = f" (known keys: {', '.join(allowed)})" if allowed else ""
        return f"unknown key {key!r}{hint}{known}"
    if kind == "missing":
        return "required field is missing"
    if kind == "model_type":
        return "expected a mapping (key: value, ...)"
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    value = err.get("input")
    if kind != "value_error" and isinstance(value, str | int | float | bool | dt.date):
        msg += f" (got {value!r})"
    return msg


# --- paths ------------------------------------------------------------------------------


def _unset_variables(text: str | None) -> list[str]:
    if not text:
        return []
    return [v for v in _UNSET_VAR.findall(str(text)) if v not in os.environ]


def _local_exists(path: Path, fmt: str) -> bool:
    return bool(get_format(fmt).raw_files(path))


def _store_format(path) -> str:
    """The native format of a campaign store, by its name's ending (zarr by default)."""
    name = str(path).rstrip("/").lower()
    for fmt in file_formats():
        if fmt.native and name.endswith(fmt.suffixes):
            return fmt.name
    return "zarr"


def _url_root(catalog_url: str, data_root: str) -> str:
    """Base of a URL catalog's relative paths: its ``data_root`` (a URL, or a path
    relative to the catalog's URL folder), or that folder."""
    if is_url(data_root):
        return data_root.rstrip("/")
    protocol, _, key = catalog_url.partition("://")
    folder = posixpath.dirname(key)
    base = posixpath.normpath(posixpath.join(folder, data_root)) if data_root else folder
    return f"{protocol}://{base}"


# --- the catalog ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class CatalogSpec:
    """A catalog's location and effective storage options: what dask tasks receive.

    Made by :attr:`Catalog.spec`; :func:`open_catalog` accepts it in place of a path
    and then uses its options as they are (the catalog's ``${VAR}`` references are not
    expanded again). The repr and ``str`` never show option values (credentials).

    Attributes
    ----------
    url : str
        The catalog file: an absolute local path or a URL.
    storage_options : dict
        fsspec options, expanded.
    """

    url: str
    storage_options: dict = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        names = ", ".join(option_names(self.storage_options))
        return f"CatalogSpec({self.url!r}, storage options: {names or 'none'})"


class Catalog:
    """A validated campaign catalog; create one with :func:`open_catalog`.

    Attributes
    ----------
    path : pathlib.Path
        The catalog file (absolute).
    model : CatalogModel
        The whole validated catalog.
    campaign : Campaign
        Name, kind and dates of the campaign.
    root : pathlib.Path or str
        Base of relative paths: ``data_root`` expanded (a string when it is a URL).
    derived_path : pathlib.Path or str
        Where derived results go.
    store_path : pathlib.Path or str or None
        The native campaign store, if the catalog names one.
    storage_options : dict or None
        fsspec options for every raw and derived URL of the catalog: its
        ``storage_options`` section expanded, with the options given to
        :func:`open_catalog` merged over it (``None`` when there are none).
    spec : CatalogSpec
        Location and options, to open the catalog again in a dask worker.
    """

    def __init__(self, path, model: CatalogModel, *, storage_options=None):
        self.path = path
        self.model = model
        self.campaign = model.campaign
        self._storage_options = merge_storage_options(storage_options, None) or None
        self.root = self._resolve_root(model.data_root)
        self.derived_path = self.resolve(model.derived)
        self.store_path = self.resolve(model.store) if model.store else None

    # -- paths -----------------------------------------------------------------------------
    def _resolve_root(self, data_root: str | None):
        if isinstance(self.path, str):  # a catalog at a URL: its folder is the base
            return _url_root(self.path, expand_path(data_root) if data_root else "")
        if not data_root:
            return self.path.parent
        text = expand_path(data_root)
        if is_url(text):
            return text.rstrip("/")
        root = Path(text)
        if not root.is_absolute():
            root = self.path.parent / root
        return Path(os.path.normpath(root))

    @property
    def storage_options(self) -> dict | None:
        """fsspec options of every raw and derived URL (a new copy at each use: fsspec
        backends may change what they are given, e.g. botocore's ``retries``)."""
        return merge_storage_options(self._storage_options, None) or None

    @property
    def spec(self) -> CatalogSpec:
        """What it takes to open this catalog again elsewhere (a dask worker).

        Its location and its effective storage options (the catalog's section,
        expanded, with the options given to :func:`open_catalog` merged over it):
        ``open_catalog(cat.spec)`` opens the same catalog with the same options, in a
        process without the catalog's environment variables. Picklable; its repr names
        the options, not their values.
        """
        return CatalogSpec(str(self.path), self.storage_options or {})

    def resolve(self, text: str):
        """Resolve a catalog path.

        Parameters
        ----------
        text : str
            A path as written in the catalog.

        Returns
        -------
        pathlib.Path or str
            URLs as they are (``str``); absolute paths as they are; others relative to
            :attr:`root` (a ``str`` URL when the root is one).
        """
        text = expand_path(text)
        if is_url(text):
            return text
        p = Path(text)
        if p.is_absolute():
            return p
        if isinstance(self.root, str):
            return f"{self.root}/{p.as_posix()}"
        return Path(os.path.normpath(self.root / p))

    @property
    def data_roots(self) -> list[Path]:
        """The local folders the catalog's paths may lie in: its own folder, its
        ``data_root`` (when local) and every folder of ``data_roots``. A catalog at a
        URL has no local folder: only the absolute folders it lists (a relative one
        would be relative to a URL, so it names no local folder)."""
        local = isinstance(self.path, Path)
        roots = [self.path.parent] if local else []
        if isinstance(self.root, Path):
            roots.append(self.root)
        for text in self.model.data_roots:
            root = Path(expand_path(text))
            if not root.is_absolute():
                if not local:
                    continue
                root = self.path.parent / root
            roots.append(Path(os.path.normpath(root)))
        return list(dict.fromkeys(roots))

    def outside_roots(self, path) -> Path | None:
        """The local path ``path`` (a resolved catalog path; ``file://`` URLs count as
        local) when it lies outside every one of :attr:`data_roots`, else ``None``."""
        text = str(path)
        if text.startswith("file://"):
            text = text[len("file://") :]
        elif is_url(text):
            return None
        local = Path(os.path.normpath(os.path.abspath(text)))
        for root in self.data_roots:
            root = Path(os.path.normpath(os.path.abspath(root)))
            if local == root or root in local.parents:
                return None
        return local

    def _check_roots(self, faults) -> None:
        m = self.model
        paths = [(None, "derived", m.derived), (None, "store", m.store)]
        for i, s in enumerate(m.sessions):
            entry = f"sessions[{i}] ({s.subject} {s.label})"
            paths += [(entry, f"files[{j}].path", f.path) for j, f in enumerate(s.files or [])]
        paths += [(None, f"measurements[{k}].path", t.path) for k, t in enumerate(m.measurements)]
        roots = ", ".join(str(r) for r in self.data_roots)
        for entry, field, text in paths:
            if text is None:
                continue
            outside = self.outside_roots(self.resolve(text))
            if outside is not None:
                faults.add(
                    f"{outside} is outside the catalog's data roots ({roots}); list its "
                    "folder under 'data_roots' to read it",
                    entry,
                    field,
                )

    # -- checks across entries -------------------------------------------------------------
    def _check(self, check_files: bool) -> None:
        m = self.model
        faults = _Faults(self.path)
        self._check_roots(faults)
        for key in ("data_root", "derived", "store"):
            for var in _unset_variables(getattr(m, key)):
                faults.add(
                    f"environment variable {var!r} is not set (use ${{{var}:-default}})", key
                )
        codes = [s.code for s in m.subjects]
        for i, s in enumerate(m.subjects):
            if s.code in codes[:i]:
                faults.add(
                    f"duplicate subject code {s.code!r} (also subjects[{codes.index(s.code)}])",
                    f"subjects[{i}] ({s.code})",
                    "code",
                )
        if m.default_protocol is not None and m.default_protocol not in m.protocols:
            faults.add(
                f"unknown protocol {m.default_protocol!r} (protocols: {sorted(m.protocols)})",
                "default_protocol",
            )
        if m.store and check_files and isinstance(self.store_path, Path):
            if not self.store_path.exists():
                faults.add(f"native store not found: {self.store_path}", "store")
        schedule = "bedrest" if m.campaign.kind == "bedrest" else "spaceflight"
        seen: dict[tuple[str, str], int] = {}
        for i, s in enumerate(m.sessions):
            entry = f"sessions[{i}] ({s.subject} {s.label})"
            if s.subject not in codes:
                faults.add(
                    f"subject {s.subject!r} is not declared under 'subjects'", entry, "subject"
                )
            key = (s.subject, s.label)
            if key in seen:
                faults.add(
                    f"duplicate session {s.subject} {s.label} (also sessions[{seen[key]}])",
                    entry,
                    "label",
                )
            else:
                seen[key] = i
            kind = parse_session_label(s.label).kind
            if kind is not None and kind != schedule:
                expected = _SCHEDULE_LABELS[schedule]
                faults.add(
                    f"{s.label!r} is a {kind} label, but this is a {m.campaign.kind} "
                    f"campaign (labels {expected})",
                    entry,
                    "label",
                )
            if s.protocol is not None and s.protocol not in m.protocols:
                faults.add(
                    f"unknown protocol {s.protocol!r} (protocols: {sorted(m.protocols)})",
                    entry,
                    "protocol",
                )
            if not s.files and not m.store:
                faults.add("no 'files', and the catalog names no native 'store'", entry, "files")
            self._check_files(s, entry, faults, check_files)
        faults.raise_if_any()

    def _check_files(self, s: SessionEntry, entry: str, faults: _Faults, check_files: bool):
        groups: dict[str, str] = {}
        vessels: dict[str, str] = {}
        for j, f in enumerate(s.files or []):
            for var in _unset_variables(f.path):
                faults.add(f"environment variable {var!r} is not set", entry, f"files[{j}].path")
            fpath = self.resolve(f.path)
            if check_files and isinstance(fpath, Path) and not _local_exists(fpath, f.format):
                what = get_format(f.format).missing
                faults.add(f"{what} not found: {fpath}", entry, f"files[{j}].path")
            for name, ch in (f.channels or {}).items():
                where = f"files[{j}].channels.{name}"
                if ch.group == "doppler":
                    if ch.vessel in vessels:
                        faults.add(
                            f"doppler vessel {ch.vessel!r} is mapped twice (also "
                            f"{vessels[ch.vessel]})",
                            entry,
                            where,
                        )
                    else:
                        vessels[ch.vessel] = where
                    continue
                target = f"{ch.group}.{ch.variable}" if ch.group == "beats" else ch.group
                if target in groups:
                    faults.add(
                        f"channel mapped twice to group {target!r} (also {groups[target]})",
                        entry,
                        where,
                    )
                else:
                    groups[target] = where

    # -- tables ----------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"<Catalog {self.campaign.name!r} ({self.campaign.kind}): "
            f"{len(self.model.subjects)} subjects, {len(self.model.sessions)} sessions>"
        )

    @property
    def subjects(self) -> pd.DataFrame:
        """One row per subject, in catalog order: ``code``, ``sex``, ``age_band``."""
        return pd.DataFrame(
            [{"code": s.code, "sex": s.sex, "age_band": s.age_band} for s in self.model.subjects],
            columns=["code", "sex", "age_band"],
        )

    def protocol_name(self, session: SessionEntry) -> str | None:
        """The catalog protocol of a session entry (``None``: the file's protocol)."""
        if session.protocol:
            return session.protocol
        if self.model.default_protocol:
            return self.model.default_protocol
        if len(self.model.protocols) == 1:
            return next(iter(self.model.protocols))
        return None

    @property
    def sessions(self) -> pd.DataFrame:
        """One row per session, in catalog order.

        Returns
        -------
        pandas.DataFrame
            Columns ``subject``, ``session`` (label), ``phase``, ``day`` (days from the
            phase anchor), ``protocol``, ``posture`` (``None`` where the protocol comes
            from the file), ``date``, ``formats`` (comma-joined, the store's format for
            sessions read from it) and ``n_files`` (1 for a session in the store).
        """
        rows = []
        for s in self.model.sessions:
            parsed = parse_session_label(s.label)
            proto = self.protocol_name(s)
            files = s.files or []
            formats = sorted({f.format for f in files}) or [_store_format(self.model.store)]
            rows.append(
                {
                    "subject": s.subject,
                    "session": s.label,
                    "phase": parsed.phase,
                    "day": float(parsed.day),
                    "protocol": proto,
                    "posture": self.model.protocols[proto].posture if proto else None,
                    "date": s.date,
                    "formats": ",".join(formats),
                    "n_files": len(files) or 1,
                }
            )
        columns = [
            "subject", "session", "phase", "day", "protocol", "posture", "date", "formats",
            "n_files",
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)

    def matrix(self) -> pd.DataFrame:
        """Which subject has which session.

        Returns
        -------
        pandas.DataFrame
            Boolean; rows are subject codes (catalog order), columns session labels
            ordered by phase (pre, in, post), then day.
        """
        columns = schedule_order([s.label for s in self.model.sessions])
        codes = [s.code for s in self.model.subjects]
        present = {(s.subject, s.label) for s in self.model.sessions}
        data = np.array([[(c, lab) in present for lab in columns] for c in codes], dtype=bool)
        out = pd.DataFrame(
            data.reshape(len(codes), len(columns)),
            index=pd.Index(codes, name="subject"),
            columns=pd.Index(columns, name="session"),
        )
        return out

    def protocol_epochs(self, name: str) -> list[tuple[str, float, float]]:
        """Epochs of a named protocol.

        Parameters
        ----------
        name : str
            Protocol name.

        Returns
        -------
        list of (str, float, float)
            ``(label, start, stop)``, in s from the session start.
        """
        if name not in self.model.protocols:
            raise CatalogError(
                f"unknown protocol {name!r} (protocols: {sorted(self.model.protocols)})",
                file=self.path,
                entry="protocols",
            )
        return [(e.label, e.start, e.stop) for e in self.model.protocols[name].epochs]

    # -- measurements ----------------------------------------------------------------------
    @property
    def measurements(self) -> pd.DataFrame:
        """The per-session measurements of every table under ``measurements``.

        Returns
        -------
        pandas.DataFrame
            One row per subject x session x epoch that has a value: ``subject``,
            ``session``, ``epoch`` (``"session"``,
            :data:`~cardiolab.measurements.SESSION_EPOCH`, for values of the whole
            session) and one float column per quantity (tables in catalog order,
            quantities in table order), in the units of ``attrs["units"]``. Rows in
            catalog session order. Only the three identifiers when the catalog lists
            no table. Tables are read once per :class:`Catalog`.

        Raises
        ------
        CatalogError
            Naming the catalog, the table file, the row and the column of every fault
            (see :mod:`cardiolab.measurements` and the module docstring).
        """
        frame, problems = self._measurement_data
        faults = _Faults(self.path)
        faults.items = list(problems)
        faults.raise_if_any()
        out = frame.copy()
        out.attrs["units"] = dict(frame.attrs["units"])
        return out

    def _check_measurements(self, check_files: bool) -> None:
        """Read and check the measurement tables at open (local tables only)."""
        tables = self.model.measurements
        if not tables or not check_files:
            return
        if any(not isinstance(self.resolve(t.path), Path) for t in tables):
            return  # a table at a URL: all are checked on first use, like remote files
        self.measurements  # noqa: B018 (reads and checks the tables; raises their faults)

    @functools.cached_property
    def _measurement_data(self) -> tuple[pd.DataFrame, list]:
        """(wide table, faults) of the measurement tables; read once."""
        m = self.model
        faults = _Faults(self.path)
        sessions = {(s.subject, s.label): s for s in m.sessions}
        codes = [s.code for s in m.subjects]
        if m.measurements:
            for name, proto in m.protocols.items():
                if any(e.label == SESSION_EPOCH for e in proto.epochs):
                    faults.add(
                        f"epoch label {SESSION_EPOCH!r} is reserved for values of a whole "
                        "session in measurement tables; rename the epoch",
                        f"protocols.{name}",
                        "epochs",
                    )
        units: dict[str, str] = {}
        unit_from: dict[str, str] = {}
        given: dict[tuple, str] = {}
        long: list[tuple] = []
        for i, t in enumerate(m.measurements):
            tpath = self.resolve(t.path)
            entry = f"measurements[{i}] ({tpath})"
            unset = _unset_variables(t.path)
            for var in unset:
                faults.add(f"environment variable {var!r} is not set", entry, "path")
            if unset:
                continue
            try:
                table = read_measurement_table(
                    tpath,
                    sheet=t.sheet,
                    separator=t.separator,
                    decimal=t.decimal,
                    storage_options=self.storage_options,
                )
            except CatalogError as err:
                for loc, column, message in getattr(err, "problems", [(None, None, str(err))]):
                    faults.add(message, entry, ", ".join(p for p in (loc, column) if p) or None)
                continue
            factors: dict[str, float] = {}
            for q, unit in table.units.items():
                if q not in units:
                    units[q], unit_from[q], factors[q] = unit, entry, 1.0
                    continue
                kind, first_kind = UNIT_FACTORS[unit][0], UNIT_FACTORS[units[q]][0]
                if kind != first_kind:
                    faults.add(
                        f"unit {unit!r} of {q!r} measures {kind}, but {unit_from[q]} gives "
                        f"{q!r} in {units[q]!r} ({first_kind})",
                        entry,
                        table.columns[q],
                    )
                    continue
                factors[q] = conversion_factor(unit, kind) / conversion_factor(units[q], kind)
            for row, values in zip(
                table.values.index, table.values.to_dict("records"), strict=True
            ):
                subject, label, epoch = values["subject"], values["session"], values["epoch"]
                where = f"row {row}"
                if subject not in codes:
                    faults.add(
                        f"unknown subject {subject!r} (subjects: {', '.join(codes)})",
                        entry,
                        f"{where}, {table.columns['subject']}",
                    )
                    continue
                session = sessions.get((subject, label))
                if session is None:
                    have = [lab for subj, lab in sessions if subj == subject]
                    faults.add(
                        f"no session {subject} {label} in the catalog (sessions of {subject}: "
                        f"{', '.join(have) or 'none'})",
                        entry,
                        f"{where}, {table.columns['session']}",
                    )
                    continue
                proto = self.protocol_name(session)
                if epoch != SESSION_EPOCH and proto is not None:
                    labels = [e.label for e in m.protocols[proto].epochs]
                    if epoch not in labels:
                        faults.add(
                            f"epoch {epoch!r} is not in protocol {proto!r} of {subject} "
                            f"{label} (epochs: {', '.join(labels)}); leave the cell empty "
                            "for a value of the whole session",
                            entry,
                            f"{where}, {table.columns['epoch']}",
                        )
                        continue
                for q in table.quantities:
                    value = values[q]
                    if q not in factors or not np.isfinite(value):
                        continue
                    key = (subject, label, epoch, q)
                    if key in given:
                        faults.add(
                            f"{q} of {subject} {label} (epoch {epoch}) is also given by "
                            f"{given[key]}",
                            entry,
                            f"{where}, {table.columns[q]}",
                        )
                        continue
                    given[key] = f"{entry}, {where}"
                    long.append((subject, label, epoch, q, value * factors[q]))
        keys = ["subject", "session", "epoch"]
        if long:
            frame = pd.DataFrame(long, columns=[*keys, "quantity", "value"])
            order = {key: k for k, key in enumerate(sessions)}
            wide = frame.pivot(index=keys, columns="quantity", values="value")
            rows = pd.MultiIndex.from_frame(frame[keys].drop_duplicates())  # table order
            wide = wide.reindex(index=rows, columns=list(units)).reset_index()
            position = [order[key] for key in zip(wide["subject"], wide["session"], strict=True)]
            wide = wide.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)
            wide.columns.name = None
        else:
            wide = pd.DataFrame({k: pd.Series(dtype=object) for k in keys})
            for q in units:
                wide[q] = pd.Series(dtype=float)
        wide.attrs["units"] = dict(units)
        return wide, faults.items

    # -- opening data ----------------------------------------------------------------------
    def check_session(self, subject: str, session: str | None = None) -> None:
        """Check that the catalog has a session (or, without ``session``, a subject).

        Parameters
        ----------
        subject : str
            Subject code.
        session : str, optional
            Session label.

        Raises
        ------
        CatalogError
            Naming the catalog file: an unknown subject (with the catalog's subjects),
            or a session the subject does not have (with the subject's sessions).
        """
        table = self.sessions
        subjects = list(dict.fromkeys(table["subject"]))
        if subject not in subjects:
            raise CatalogError(
                f"unknown subject {subject!r} (the catalog's subjects: {', '.join(subjects)})",
                file=self.path,
            )
        labels = list(table.loc[table["subject"] == subject, "session"])
        if session is not None and session not in labels:
            raise CatalogError(
                f"no session {subject} {session} in the catalog: subject {subject} has no "
                f"session {session!r} (its sessions: {', '.join(labels)})",
                file=self.path,
            )

    def _find(self, subject: str, label: str) -> tuple[int, SessionEntry]:
        for i, s in enumerate(self.model.sessions):
            if s.subject == subject and s.label == label:
                return i, s
        self.check_session(subject, label)  # names what the catalog has instead
        known = ", ".join(f"{s.subject} {s.label}" for s in self.model.sessions[:12])
        more = ", ..." if len(self.model.sessions) > 12 else ""
        raise CatalogError(
            f"no session {subject} {label} in the catalog (it has: {known}{more})",
            file=self.path,
            entry="sessions",
        )

    def _read_files(
        self, s: SessionEntry, store_tree, indexes: bool = True
    ) -> list[tuple[str, xr.DataTree]]:
        """Read a session's files (or its store node): ``[(source, node), ...]``."""
        from . import io as cio

        key = f"{s.subject}/{s.label}"
        if not s.files:
            source = f"{self.store_path} (group {key})"
            if store_tree is not None:
                try:
                    return [(source, store_tree[key].copy())]
                except KeyError:
                    raise SessionFormatError(
                        f"{self.store_path}: no session group {key!r} in the native store"
                    ) from None
            node = cio.read_session(
                self.store_path,
                _store_format(self.store_path),
                group=key,
                storage_options=self.storage_options,
                indexes=indexes,
            )
            return [(source, node)]
        out = []
        for f in s.files:
            fpath = self.resolve(f.path)
            fmt = get_format(f.format)
            options = {
                name: getattr(f, name) for name in fmt.option_names if getattr(f, name) is not None
            }
            if fmt.native:
                options.setdefault("group", key)
            channels = None
            if f.channels:
                channels = {
                    name: {k: v for k, v in ch.model_dump().items() if v is not None}
                    for name, ch in f.channels.items()
                }
            node = cio.read_session(
                fpath,
                f.format,
                channels=channels,
                storage_options=self.storage_options,
                indexes=indexes,
                **options,
            )
            out.append((str(fpath), node))
        return out

    def _session_node(
        self,
        index: int,
        s: SessionEntry,
        store_tree=None,
        indexes: bool = True,
        load_below: int = 0,
    ) -> xr.DataTree:
        name = f"session {s.subject}/{s.label}"
        where = f"{name} ({self.path}, {_session_entry(index, s.model_dump())})"
        groups: dict[str, xr.Dataset] = {}
        origin: dict[str, str] = {}
        file_protocols: list[tuple[str, xr.Dataset]] = []
        file_attrs: dict = {}
        try:
            read = self._read_files(s, store_tree, indexes)
        except SessionFormatError as err:
            raise type(err)(
                f"{where}: {err}", violations=[f"{where}: {v}" for v in err.violations]
            ) from None
        if load_below and _nbytes(read) <= load_below:
            read = [(source, node.compute()) for source, node in read]
        for source, node in read:
            for key, value in node.attrs.items():
                file_attrs.setdefault(key, value)
            for gname, child in node.children.items():
                ds = child.to_dataset(inherit=False)
                if gname == "protocol":
                    file_protocols.append((source, ds))
                elif gname in groups:
                    raise SessionFormatError(
                        f"{where}: group {gname!r} comes from both {origin[gname]} and {source}"
                    )
                else:
                    groups[gname] = ds
                    origin[gname] = source
        for key in ("subject", "session"):
            expected = s.subject if key == "subject" else s.label
            if key in file_attrs and str(file_attrs[key]) != expected:
                log.warning(
                    "%s: the file says %s %r; the catalog's %r is used",
                    where, key, file_attrs[key], expected,
                )  # fmt: skip

        proto_name = self.protocol_name(s)
        if proto_name is not None:
            protocol = protocol_group(self.protocol_epochs(proto_name))
            protocol.attrs["challenges"] = json.dumps(
                [c.model_dump() for c in self.model.protocols[proto_name].challenges]
            )
            posture = self.model.protocols[proto_name].posture
        else:
            if len(file_protocols) > 1 and not all(
                ds.identical(file_protocols[0][1]) for _, ds in file_protocols[1:]
            ):
                raise SessionFormatError(
                    f"{where}: different protocols in {file_protocols[0][0]} and "
                    f"{file_protocols[1][0]}; name the session's protocol in the catalog"
                )
            protocol = file_protocols[0][1] if file_protocols else None
            proto_name = str(file_attrs.get("protocol", "from-file"))
            posture = file_attrs.get("posture")
            if posture is None:
                log.warning(
                    "%s: the catalog names no protocol and the file no posture; "
                    "assuming a supine baseline",
                    where,
                )
                posture = "supine"
        if protocol is not None:
            if s.events:
                protocol = protocol.assign_attrs(
                    events=json.dumps([e.model_dump() for e in s.events])
                )
            groups["protocol"] = protocol

        parsed = parse_session_label(s.label)
        attrs = dict(file_attrs)
        attrs.update(
            subject=s.subject,
            session=s.label,
            phase=parsed.phase,
            day=float(parsed.day),
            campaign=self.campaign.name,
            protocol=proto_name,
            posture=posture,
        )
        subject_entry = next((x for x in self.model.subjects if x.code == s.subject), None)
        if subject_entry is not None:  # pulse-contour impedance depends on age and sex
            attrs.update(
                {k: v for k in ("sex", "age_band") if (v := getattr(subject_entry, k)) is not None}
            )
        out = xr.DataTree(dataset=xr.Dataset(attrs=attrs))
        for gname, ds in groups.items():
            out[gname] = xr.DataTree(dataset=ds)
        return validate_session(out, name=where, sources=origin)

    def open_session(
        self, subject: str, label: str, *, indexes: bool = True, load_below: int = 0
    ) -> xr.DataTree:
        """Open one session as a lazy (dask-backed) node of the data model.

        Parameters
        ----------
        subject : str
            Subject code (``S01``).
        label : str
            Session label (``R+1``).
        indexes : bool
            Build the ``time`` indexes of native stores (default). ``False`` keeps
            ``time`` a lazy coordinate without an index (``isel`` only): the pipeline
            opens long recordings this way, the index of a 24-h 1 kHz ECG costing
            0.7 GB.
        load_below : int
            Read the session's samples into memory, in one pass, when its files hold
            at most this many bytes of samples and times (default 0: never). The
            pipeline reads a 10-minute session this way (each signal is read once,
            not once per use) and leaves a 24-hour one lazy.

        Returns
        -------
        xarray.DataTree
            Session node: the groups of all the session's files, the catalog's
            ``protocol`` group and the session attributes
            (:data:`cardiolab.schema.SESSION_ATTRS`), validated with
            :func:`cardiolab.schema.validate_session`. No sample is read, unless
            ``load_below`` says so.

        Raises
        ------
        CatalogError
            If the catalog has no such session.
        SessionFormatError
            If a file cannot be read, two files give the same group, or the result
            breaks the data model.
        """
        index, s = self._find(subject, label)
        return self._session_node(index, s, indexes=indexes, load_below=load_below)

    def open_campaign(self) -> xr.DataTree:
        """Open every session as one lazy tree ``/<subject>/<session>/<group>``.

        The native store, if sessions are read from it, is opened once. Subject nodes
        carry ``sex`` and ``age_band``; the root carries ``campaign``, ``kind`` and
        ``catalog`` (the catalog file).

        Returns
        -------
        xarray.DataTree

        Raises
        ------
        SessionFormatError
            Listing every session that could not be opened.
        """
        from . import io as cio

        store_tree = None
        if any(not s.files for s in self.model.sessions):
            store_tree = cio.open_campaign_store(
                self.store_path, storage_options=self.storage_options
            )
        tree = xr.DataTree(
            dataset=xr.Dataset(
                attrs={
                    "campaign": self.campaign.name,
                    "kind": self.campaign.kind,
                    "catalog": str(self.path),
                }
            )
        )
        for subj in self.model.subjects:
            attrs = {k: v for k, v in (("sex", subj.sex), ("age_band", subj.age_band)) if v}
            tree[subj.code] = xr.DataTree(dataset=xr.Dataset(attrs=attrs))
        violations: list[str] = []
        for i, s in enumerate(self.model.sessions):
            try:
                tree[s.subject][s.label] = self._session_node(i, s, store_tree)
            except SessionFormatError as err:
                violations.extend(err.violations)
        if violations:
            raise SessionFormatError(
                f"{len(violations)} problem(s) opening the campaign of {self.path}:\n"
                + "\n".join(f"  - {v}" for v in violations),
                violations=violations,
            )
        return tree


def _nbytes(read: list[tuple[str, xr.DataTree]]) -> int:
    """Bytes of samples and coordinates of a session's read nodes (nothing is read)."""
    return sum(n.to_dataset(inherit=False).nbytes for _, node in read for n in node.subtree)


def _validate(
    data: dict, path, *, check_files: bool, storage_options=None, expanded: bool = False
) -> Catalog:
    """Validate catalog data; ``storage_options`` are merged over the catalog's section
    (expanded here), or used as they are when ``expanded`` (a :class:`CatalogSpec`)."""
    try:
        model = CatalogModel.model_validate(data)
    except ValidationError as err:
        faults = _Faults(path)
        for e in err.errors():
            entry, field = _entry_and_field(data, tuple(e["loc"]))
            faults.add(_message(e), entry, field)
        faults.raise_if_any()
    if not expanded:
        section = expand_storage_options(model.storage_options, file=path)
        storage_options = merge_storage_options(section, storage_options)
    catalog = Catalog(path, model, storage_options=dict(storage_options or {}) or None)
    catalog._check(check_files)
    catalog._check_measurements(check_files)
    return catalog


def as_catalog(catalog) -> Catalog:
    """A :class:`Catalog` as it is, or the catalog at a path opened (:func:`open_catalog`).

    What every function that takes "a catalog" (path, URL, :class:`CatalogSpec` or
    :class:`Catalog`) starts with.

    Parameters
    ----------
    catalog : str, pathlib.Path, CatalogSpec or Catalog

    Returns
    -------
    Catalog

    Raises
    ------
    CatalogError
        As :func:`open_catalog`.
    """
    return catalog if isinstance(catalog, Catalog) else open_catalog(catalog)


def open_catalog(path, *, check_files: bool = True, storage_options=None) -> Catalog:
    """Read and validate a campaign catalog.

    Parameters
    ----------
    path : str, pathlib.Path or CatalogSpec
        The ``data_catalog.yaml`` file: a local path or an fsspec URL
        (``s3://bucket/campaign/data_catalog.yaml``); ``~`` and ``${VAR}`` are
        expanded. A :class:`CatalogSpec` (:attr:`Catalog.spec`) brings its own,
        already expanded, storage options.
    check_files : bool
        Check that every local file and the local native store exist. URLs are never
        checked here; a missing remote file is reported when its session is opened.
    storage_options : dict, optional
        fsspec options (credentials stay out of the catalog), used to read a catalog
        at a URL and merged over the catalog's ``storage_options`` section, key by key
        (nested mappings too; these win), for every raw and derived URL of the
        catalog. The dict given is not changed.

    Returns
    -------
    Catalog

    Raises
    ------
    CatalogError
        Naming the catalog file, and the entry and field of every fault found (one
        per line when there are several; ``err.problems`` lists them as
        ``(entry, field, message)``).

    Examples
    --------
    >>> cat = open_catalog("data_catalog.yaml")  # doctest: +SKIP
    >>> cat.sessions.head()  # doctest: +SKIP
    """
    expanded = isinstance(path, CatalogSpec)
    if expanded:
        storage_options = merge_storage_options(path.storage_options, storage_options)
        path = path.url
    text = expand_path(str(path))
    location = text if is_url(text) else Path(text).absolute()
    data = _read_yaml(location, storage_options)
    return _validate(
        data,
        location,
        check_files=check_files,
        storage_options=storage_options,
        expanded=expanded,
    )


def _plain(value):
    """Turn NumPy scalars, tuples and paths into what YAML's safe dumper writes."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return value.as_posix()
    return value


_HEADER = (
    "cardiolab campaign catalog (format version 1); check it with "
    "`cardiolab validate <this file>`.\n"
    "Relative paths are relative to data_root (default: this file's folder)."
)


def write_catalog(
    data: Mapping,
    path,
    *,
    validate: bool = True,
    check_files: bool = True,
    overwrite: bool = False,
    header: str | None = None,
) -> Path:
    """Write a catalog dict as YAML, keeping its key order, under a header comment.

    Parameters
    ----------
    data : mapping
        Catalog content (see the module docstring).
    path : str or pathlib.Path
        Destination file (its folder must exist).
    validate : bool
        Validate the YAML text as :func:`open_catalog` would read it back, before
        anything is written; a catalog that does not validate is not written.
    check_files : bool
        Whether that validation checks that local files and the store exist; pass
        ``False`` to write a catalog before its data.
    overwrite : bool
        Replace an existing file.
    header : str, optional
        Comment lines at the top (``#`` is added where missing); a default says what
        the file is.

    Returns
    -------
    pathlib.Path
        The catalog file.

    Raises
    ------
    CatalogError
        If the file exists (without ``overwrite``) or the catalog does not validate.
    """
    path = Path(expand_path(str(path))).absolute()
    if path.exists() and not overwrite:
        raise CatalogError("refusing to overwrite an existing catalog", file=path)
    lines = (header if header is not None else _HEADER).splitlines()
    comment = "\n".join(line if line.startswith("#") else f"# {line}".rstrip() for line in lines)
    body = yaml.safe_dump(
        _plain(data), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )
    text = (comment + "\n" if comment else "") + body
    if validate:
        _validate(_parse_yaml(text, path), path, check_files=check_files)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    log.info("wrote catalog %s", path)
    return path
