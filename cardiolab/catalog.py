"""Campaign catalogs: ``data_catalog.yaml`` schema, validation and path resolution.

A catalog names the campaign, its subjects, its sessions and the files that hold each
session, and says where derived results go. :func:`open_catalog` validates it whole
(with pydantic) and raises one :class:`~cardiolab.errors.CatalogError` that names the
file, the entry and the field of every fault; :class:`Catalog` then opens sessions
lazily into the session data model.

Format (version 1)::

    version: 1
    campaign: {name: tg2-cardio, kind: spaceflight, launch: 2016-09-15, landing: 2016-11-18}
    data_root: .                  # base of relative paths (default: the catalog's folder)
    derived: derived.zarr         # where derived results go
    store: campaign.zarr          # optional native store for sessions without `files`
    protocols:
      supine-stand:
        posture: supine
        epochs: [{label: supine, start: 0, stop: 300}, {label: stand, start: 300, stop: 600}]
    default_protocol: supine-stand
    subjects: [{code: S01, sex: F, age_band: 30-39}]
    sessions:
      - subject: S01
        label: R+1
        files:
          - {path: raw/S01_R+1.edf, format: edf, channels: {"ECG II": {group: ecg, units: uV}}}
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import xarray as xr
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import CatalogError, SessionFormatError, UnitError
from .labels import CAMPAIGN_KINDS, PHASES, LabelError, parse_session_label
from .paths import expand_path, is_url
from .schema import POSTURES, RAW_GROUPS, protocol_group, validate_session
from .units import conversion_factor

__all__ = ["Catalog", "open_catalog", "write_catalog", "FORMATS"]

log = logging.getLogger("cardiolab")

#: File formats a catalog can name.
FORMATS = ("zarr", "netcdf", "edf", "wfdb", "csv")
_NATIVE = ("zarr", "netcdf")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_AGE_BAND = re.compile(r"^(\d{1,3})-(\d{1,3})$|^(\d{1,3})\+$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ChannelMap(_Model):
    """Where one channel of a file goes in the data model."""

    group: Literal["ecg", "abp", "ldf", "doppler"]
    units: str | None = None
    vessel: str | None = None

    @field_validator("units")
    @classmethod
    def _known_unit(cls, value, info):
        return value

    @model_validator(mode="after")
    def _check(self):
        if self.units is not None:
            try:
                conversion_factor(self.units, self.group)
            except UnitError as err:
                raise ValueError(str(err)) from None
        if self.group == "doppler" and not self.vessel:
            raise ValueError("a doppler channel needs a 'vessel' (e.g. femoral, mca)")
        if self.group != "doppler" and self.vessel:
            raise ValueError("'vessel' is only for doppler channels")
        return self


class FileEntry(_Model):
    """One file of a session."""

    path: str
    format: Literal["zarr", "netcdf", "edf", "wfdb", "csv"]
    channels: dict[str, ChannelMap] | None = None
    group: str | None = None  # node inside a native store
    annotations: str | None = None  # wfdb annotation extension
    time_column: str | None = None  # csv
    time_units: str | None = None  # csv

    @model_validator(mode="after")
    def _check(self):
        if self.format in _NATIVE:
            for key in ("channels", "annotations", "time_column", "time_units"):
                if getattr(self, key) is not None:
                    raise ValueError(f"'{key}' does not apply to {self.format} files")
        else:
            if not self.channels:
                raise ValueError(f"a {self.format} file needs 'channels' (channel -> group)")
            if self.group is not None:
                raise ValueError("'group' is only for zarr/netcdf stores")
        if self.format != "wfdb" and self.annotations is not None:
            raise ValueError("'annotations' is only for wfdb records")
        if self.format != "csv" and (self.time_column or self.time_units):
            raise ValueError("'time_column'/'time_units' are only for csv files")
        if self.time_units is not None:
            try:
                conversion_factor(self.time_units, "time")
            except UnitError as err:
                raise ValueError(str(err)) from None
        return self


class Epoch(_Model):
    label: str
    start: float = Field(ge=0)
    stop: float


class Protocol(_Model):
    posture: Literal["supine", "seated", "standing"] = "supine"
    epochs: list[Epoch] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self):
        labels = [e.label for e in self.epochs]
        dups = sorted({x for x in labels if labels.count(x) > 1})
        if dups:
            raise ValueError(f"duplicate epoch labels {dups}")
        for e in self.epochs:
            if e.stop <= e.start:
                raise ValueError(f"epoch {e.label!r}: stop {e.stop:g} s <= start {e.start:g} s")
        ordered = sorted(self.epochs, key=lambda e: e.start)
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b.start < a.stop:
                raise ValueError(f"epochs {a.label!r} and {b.label!r} overlap")
        return self


class Subject(_Model):
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
        value = str(value).strip()
        m = _AGE_BAND.match(value)
        if not m or (m.group(1) and int(m.group(1)) > int(m.group(2))):
            raise ValueError(f"age band {value!r} must look like '30-39' or '60+'")
        return value


class Session(_Model):
    subject: str
    label: str
    protocol: str | None = None
    date: dt.date | None = None
    files: list[FileEntry] | None = None

    @field_validator("label")
    @classmethod
    def _label(cls, value):
        try:
            parse_session_label(value)
        except LabelError as err:
            raise ValueError(str(err)) from None
        return value


class Campaign(_Model):
    name: str
    kind: Literal["spaceflight", "bedrest", "confinement"]
    launch: dt.date | None = None
    landing: dt.date | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "bedrest" and (self.launch or self.landing):
            raise ValueError("a bedrest campaign uses 'start'/'end', not 'launch'/'landing'")
        if self.kind != "bedrest" and (self.start or self.end):
            raise ValueError(f"a {self.kind} campaign uses 'launch'/'landing', not 'start'/'end'")
        first = self.launch or self.start
        last = self.landing or self.end
        if first and last and last < first:
            raise ValueError("the campaign ends before it starts")
        return self


class CatalogModel(_Model):
    version: Literal[1] = 1
    campaign: Campaign
    data_root: str | None = None
    derived: str
    store: str | None = None
    protocols: dict[str, Protocol] = Field(default_factory=dict)
    default_protocol: str | None = None
    subjects: Annotated[list[Subject], Field(min_length=1)]
    sessions: Annotated[list[Session], Field(min_length=1)]


# --- YAML loading ---------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (a channel listed twice)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError("catalog file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CatalogError(f"cannot read the catalog: {err}", file=path) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise CatalogError(f"YAML error at {where}{problem}", file=path) from None
    if data is None:
        raise CatalogError("the catalog is empty", file=path)
    if not isinstance(data, dict):
        raise CatalogError(
            f"a catalog is a mapping with 'campaign', 'subjects', 'sessions', ...; "
            f"this file holds a {type(data).__name__}",
            file=path,
        )
    return data


def _entry_name(data, loc) -> tuple[str | None, str | None]:
    """Name the entry and the field of a pydantic error location."""
    if not loc:
        return None, None
    head = loc[0]
    if head in ("sessions", "subjects") and len(loc) > 1 and isinstance(loc[1], int):
        i = loc[1]
        entry = f"{head}[{i}]"
        try:
            item = data[head][i]
            if head == "sessions":
                entry += f" ({item.get('subject', '?')} {item.get('label', '?')})"
            else:
                entry += f" ({item.get('code', '?')})"
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
        rest = loc[2:]
    elif head == "protocols" and len(loc) > 1:
        entry = f"protocols.{loc[1]}"
        rest = loc[2:]
    else:
        entry = str(head)
        rest = loc[1:]
    field = ""
    for part in rest:
        if isinstance(part, int):
            field += f"[{part}]"
        else:
            field += ("." if field else "") + str(part)
    return entry, field or None


def _clean_message(err: dict) -> str:
    msg = err.get("msg", "")
    if err.get("type") == "extra_forbidden":
        return "unknown key (check its spelling)"
    if err.get("type") == "missing":
        return "required field is missing"
    return msg.removeprefix("Value error, ")


class _Faults:
    """Collects catalog faults and raises them together."""

    def __init__(self, file):
        self.file = file
        self.items: list[tuple[str | None, str | None, str]] = []

    def add(self, message, entry=None, field=None):
        self.items.append((entry, field, message))

    def raise_if_any(self):
        if not self.items:
            return
        if len(self.items) == 1:
            entry, field, message = self.items[0]
            raise CatalogError(message, file=self.file, entry=entry, field=field)
        lines = []
        for entry, field, message in self.items:
            where = ": ".join(p for p in (entry, field) if p)
            lines.append(f"  - {where}: {message}" if where else f"  - {message}")
        err = CatalogError(f"{len(self.items)} problems:\n" + "\n".join(lines), file=self.file)
        err.problems = list(self.items)
        first = self.items[0]
        err.entry, err.field = first[0], first[1]
        raise err


# --- the catalog ----------------------------------------------------------------------


class Catalog:
    """A validated campaign catalog.

    Use :func:`open_catalog` to create one.

    Attributes
    ----------
    path : pathlib.Path
        The catalog file.
    campaign : Campaign
        Name, kind and dates of the campaign.
    root : pathlib.Path or str
        Base of relative paths (``data_root``, expanded).
    derived_path : pathlib.Path or str
        Where derived results go.
    store_path : pathlib.Path or str or None
        The native campaign store, if any.
    """

    def __init__(self, path: Path, model: CatalogModel, check_files: bool = True):
        self.path = path
        self.model = model
        self.campaign = model.campaign
        root = expand_path(model.data_root) if model.data_root else None
        if root is None:
            self.root = path.parent
        elif is_url(root):
            self.root = root.rstrip("/")
        else:
            root_path = Path(root)
            self.root = root_path if root_path.is_absolute() else path.parent / root_path
        self.derived_path = self.resolve(model.derived)
        self.store_path = self.resolve(model.store) if model.store else None
        self._check(check_files)
        self._store_tree = None

    # -- paths ---------------------------------------------------------------------------
    def resolve(self, text: str):
        """Resolve a catalog path: URLs as they are, others relative to ``root``."""
        text = expand_path(text)
        if is_url(text):
            return text
        p = Path(text)
        if p.is_absolute():
            return p
        if isinstance(self.root, str):
            return f"{self.root}/{text}"
        return self.root / p

    # -- validation beyond the per-field schema ---------------------------------------------
    def _check(self, check_files: bool):
        m = self.model
        faults = _Faults(self.path)
        codes = [s.code for s in m.subjects]
        for i, s in enumerate(m.subjects):
            if codes.count(s.code) > 1 and codes.index(s.code) != i:
                faults.add(
                    f"duplicate subject code {s.code!r}", f"subjects[{i}] ({s.code})", "code"
                )
        if m.default_protocol is not None and m.default_protocol not in m.protocols:
            faults.add(
                f"unknown protocol {m.default_protocol!r}; defined: {sorted(m.protocols)}",
                "default_protocol",
            )
        if m.store and check_files and isinstance(self.store_path, Path):
            if not self.store_path.exists():
                faults.add(f"native store not found: {self.store_path}", "store")
        seen = {}
        kind = m.campaign.kind
        for i, s in enumerate(m.sessions):
            entry = f"sessions[{i}] ({s.subject} {s.label})"
            if s.subject not in codes:
                faults.add(
                    f"subject {s.subject!r} is not declared under 'subjects'", entry, "subject"
                )
            key = (s.subject, s.label)
            if key in seen:
                faults.add(
                    f"duplicate session: {s.subject} {s.label} is also sessions[{seen[key]}]",
                    entry,
                    "label",
                )
            else:
                seen[key] = i
            parsed = parse_session_label(s.label)
            if parsed.kind is not None and kind != "confinement":
                if (parsed.kind == "bedrest") != (kind == "bedrest"):
                    faults.add(
                        f"label {s.label!r} is a {parsed.kind} label, but the campaign is {kind}",
                        entry,
                        "label",
                    )
            if s.protocol is not None and s.protocol not in m.protocols:
                faults.add(
                    f"unknown protocol {s.protocol!r}; defined: {sorted(m.protocols)}",
                    entry,
                    "protocol",
                )
            if not s.files and not m.store:
                faults.add("no 'files' and the catalog names no native 'store'", entry, "files")
            groups: dict[str, str] = {}
            vessels: dict[str, str] = {}
            for j, f in enumerate(s.files or []):
                fpath = self.resolve(f.path)
                if check_files and isinstance(fpath, Path) and not _exists(fpath, f.format):
                    faults.add(f"file not found: {fpath}", entry, f"files[{j}].path")
                for name, ch in (f.channels or {}).items():
                    where = f"files[{j}].channels.{name}"
                    if ch.group == "doppler":
                        if ch.vessel in vessels:
                            faults.add(
                                f"vessel {ch.vessel!r} is mapped twice (also {vessels[ch.vessel]})",
                                entry,
                                where,
                            )
                        vessels[ch.vessel] = where
                    elif ch.group in groups:
                        faults.add(
                            f"channel mapped twice to group {ch.group!r} (also {groups[ch.group]})",
                            entry,
                            where,
                        )
                    else:
                        groups[ch.group] = where
        faults.raise_if_any()

    # -- tables ------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"<Catalog {self.campaign.name!r} ({self.campaign.kind}): "
            f"{len(self.model.subjects)} subjects, {len(self.model.sessions)} sessions; "
            f"{self.path}>"
        )

    @property
    def subjects(self) -> pd.DataFrame:
        """One row per subject: ``code``, ``sex``, ``age_band``."""
        return pd.DataFrame(
            [{"code": s.code, "sex": s.sex, "age_band": s.age_band} for s in self.model.subjects]
        )

    def _protocol_name(self, session: Session) -> str | None:
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

        Columns: ``subject``, ``session``, ``phase``, ``day`` (days from the phase
        anchor), ``protocol``, ``posture``, ``date``, ``formats``, ``n_files``.
        """
        rows = []
        for s in self.model.sessions:
            parsed = parse_session_label(s.label)
            proto = self._protocol_name(s)
            files = s.files or []
            formats = sorted({f.format for f in files}) or [self._store_format()]
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
        return pd.DataFrame(rows)

    def _store_format(self) -> str:
        store = str(self.model.store or "")
        return "netcdf" if store.endswith((".nc", ".nc4", ".h5")) else "zarr"

    def matrix(self) -> pd.DataFrame:
        """Subjects x sessions presence table (rows: subjects; columns: labels ordered
        by phase, then day)."""
        table = self.sessions
        labels = table.drop_duplicates("session")
        order = sorted(labels.itertuples(), key=lambda r: (PHASES.index(r.phase), r.day, r.session))
        columns = [r.session for r in order]
        codes = [s.code for s in self.model.subjects]
        present = set(zip(table["subject"], table["session"], strict=True))
        data = [[(c, lab) in present for lab in columns] for c in codes]
        out = pd.DataFrame(data, index=pd.Index(codes, name="subject"), columns=columns)
        out.columns.name = "session"
        return out

    def protocol_epochs(self, name: str) -> list[tuple[str, float, float]]:
        """Epochs ``(label, start, stop)`` (s) of a named protocol."""
        if name not in self.model.protocols:
            raise CatalogError(
                f"unknown protocol {name!r}; defined: {sorted(self.model.protocols)}",
                file=self.path,
            )
        return [(e.label, e.start, e.stop) for e in self.model.protocols[name].epochs]

    # -- opening data --------------------------------------------------------------------
    def _find(self, subject: str, label: str) -> tuple[int, Session]:
        for i, s in enumerate(self.model.sessions):
            if s.subject == subject and s.label == label:
                return i, s
        known = ", ".join(f"{s.subject} {s.label}" for s in self.model.sessions[:12])
        raise CatalogError(
            f"no session {subject} {label} in the catalog (it has: {known}"
            f"{', ...' if len(self.model.sessions) > 12 else ''})",
            file=self.path,
        )

    def _store(self):
        if self._store_tree is None:
            from .io import open_campaign_store

            self._store_tree = open_campaign_store(self.store_path)
        return self._store_tree

    def _read_groups(self, session: Session) -> xr.DataTree:
        from .io import read_session

        if not session.files:
            tree = self._store()
            key = f"{session.subject}/{session.label}"
            try:
                return tree[key]
            except KeyError:
                raise SessionFormatError(
                    f"{self.store_path}: no session {key} in the native store"
                ) from None
        merged: dict[str, xr.Dataset] = {}
        origin: dict[str, str] = {}
        for f in session.files:
            fpath = self.resolve(f.path)
            options = {}
            if f.format in _NATIVE:
                options["group"] = f.group or f"{session.subject}/{session.label}"
            if f.format == "wfdb" and f.annotations:
                options["annotations"] = f.annotations
            if f.format == "csv":
                if f.time_column:
                    options["time_column"] = f.time_column
                if f.time_units:
                    options["time_units"] = f.time_units
            channels = None
            if f.channels:
                channels = {
                    name: {k: v for k, v in ch.model_dump().items() if v is not None}
                    for name, ch in f.channels.items()
                }
            node = read_session(fpath, f.format, channels=channels, **options)
            for gname, child in node.children.items():
                if gname in merged:
                    raise SessionFormatError(
                        f"session {session.subject} {session.label}: group {gname!r} comes "
                        f"from both {origin[gname]} and {fpath}"
                    )
                merged[gname] = child.to_dataset(inherit=False)
                origin[gname] = str(fpath)
        return xr.DataTree.from_dict(merged)

    def open_session(self, subject: str, label: str) -> xr.DataTree:
        """Open one session as a lazy (dask-backed) node of the data model.

        Parameters
        ----------
        subject : str
            Subject code (``S01``).
        label : str
            Session label (``R+1``).

        Returns
        -------
        xarray.DataTree
            Session node with its attributes and raw groups, validated with
            :func:`cardiolab.schema.validate_session`.

        Raises
        ------
        CatalogError
            If the catalog has no such session.
        SessionFormatError
            If the files do not yield a valid session.
        """
        _, session = self._find(subject, label)
        node = self._read_groups(session)
        groups = {name: child.to_dataset(inherit=False) for name, child in node.children.items()}
        proto_name = self._protocol_name(session)
        if session.protocol or self.model.default_protocol or "protocol" not in groups:
            if proto_name:
                groups["protocol"] = protocol_group(self.protocol_epochs(proto_name))
        parsed = parse_session_label(label)
        attrs = dict(node.attrs)
        attrs.update(
            subject=subject,
            session=label,
            phase=parsed.phase,
            day=float(parsed.day),
            campaign=self.campaign.name,
            protocol=proto_name or attrs.get("protocol") or "unspecified",
            posture=(
                self.model.protocols[proto_name].posture
                if proto_name
                else attrs.get("posture", "supine")
            ),
        )
        out = xr.DataTree(dataset=xr.Dataset(attrs=attrs))
        for name, ds in groups.items():
            out[name] = xr.DataTree(dataset=ds)
        return validate_session(out, name=f"session {subject}/{label} ({self.path})")

    def open_campaign(self) -> xr.DataTree:
        """Open every session as one lazy tree ``/<subject>/<session>/<group>``."""
        nodes = {}
        for s in self.model.sessions:
            nodes[f"{s.subject}/{s.label}"] = self.open_session(s.subject, s.label)
        tree = xr.DataTree.from_dict(
            {
                "/": xr.Dataset(
                    attrs={
                        "campaign": self.campaign.name,
                        "kind": self.campaign.kind,
                        "catalog": str(self.path),
                    }
                ),
                **nodes,
            }
        )
        return tree


def _exists(path: Path, fmt: str) -> bool:
    if fmt == "wfdb":
        return path.with_name(path.name + ".hea").exists() or path.exists()
    return path.exists()


def open_catalog(path, *, check_files: bool = True) -> Catalog:
    """Read and validate a campaign catalog.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``data_catalog.yaml`` file.
    check_files : bool
        Check that every local file and the native store exist (URLs are never
        checked).

    Returns
    -------
    Catalog

    Raises
    ------
    CatalogError
        Naming the file, the entry and the field of every fault found.

    Examples
    --------
    >>> cat = open_catalog("data_catalog.yaml")  # doctest: +SKIP
    >>> cat.sessions.head()  # doctest: +SKIP
    """
    path = Path(expand_path(str(path)))
    data = _load_yaml(path)
    try:
        model = CatalogModel.model_validate(data)
    except ValidationError as err:
        faults = _Faults(path)
        for e in err.errors():
            entry, field = _entry_name(data, e["loc"])
            faults.add(_clean_message(e), entry, field)
        faults.raise_if_any()
    return Catalog(path, model, check_files=check_files)


def write_catalog(data: dict, path, *, validate: bool = True, check_files: bool = False) -> Path:
    """Write a catalog dict as YAML (key order kept) and, by default, validate it.

    Parameters
    ----------
    data : dict
        Catalog content (see the module docstring).
    path : str or pathlib.Path
        Destination; an existing file is refused.
    validate : bool
        Re-open the written file with :func:`open_catalog`.
    check_files : bool
        Whether that validation checks that files exist.
    """
    path = Path(path)
    if path.exists():
        raise CatalogError("refusing to overwrite an existing catalog", file=path)
    text = "# cardiolab campaign catalog\n" + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, width=100
    )
    path.write_text(text)
    if validate:
        open_catalog(path, check_files=check_files)
    return path


assert set(RAW_GROUPS) == {"ecg", "abp", "ldf", "doppler"} and set(CAMPAIGN_KINDS) and POSTURES
