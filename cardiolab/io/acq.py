"""BIOPAC AcqKnowledge files (``.acq``, versions 3.x to 5.x), read with bioread.

Library
    Files are parsed by `bioread <https://github.com/uwmadison-chm/bioread>`_ (Nate
    Vack, University of Wisconsin-Madison; MIT licence), the reference reader of the
    undocumented AcqKnowledge layout (BIOPAC Application Note 156 describes the 3.x
    headers only): graph, channel, data-type and marker headers, uncompressed
    interleaved samples and the zlib-compressed channel blocks of 4.x/5.x files, in
    either byte order. This module adds what bioread does not do:

    - checks whose errors name the file and the field: bioread's header reader
      swallows its own exceptions (``bioread.read_headers`` returns ``None`` for an
      empty or foreign file and raises ``AttributeError`` for some), so the file
      revision (header field ``lVersion``, bytes 2-5) is checked here first, and the
      sample data's extent is checked against the file size (bioread raises
      ``ValueError: buffer is smaller than requested size`` on a cut file, or reads the
      channel headers of a cut compressed file and then fails with ``TypeError``);
    - lazy reads, one channel at a time, and the conversion of each channel to the
      unit of its group (:func:`~cardiolab.io.channels.unit_factor`);
    - protocol epochs from the file's segment markers (below).

Reading
    Opening reads the headers (graph, channels, data types, markers, journal and, for
    compressed files, the per-channel compression headers: a few kB) and no sample.
    Each mapped channel becomes a dask array backed by one delayed
    ``bioread.read(path, channel_indexes=[i])``, so computing it reads that channel
    only:

    - uncompressed files (3.x, most 4.x): channels are interleaved sample by sample
      (each at its own frequency divider), so bioread streams the whole data block
      past (256 kB at a time) and keeps that channel's samples: the bytes read are
      the file's, the memory held is the channel's;
    - compressed files (4.x/5.x "compressed"): each channel is one zlib block;
      bioread seeks to that channel's block and decompresses it whole: the other
      channels' blocks are not read, but a channel is never read in part.

    Values are bioread's scaled values (``raw * scale + offset`` for 16-bit channels,
    as stored for float64 channels), in the channel's unit in the file (bioread's
    ``units``), multiplied by the factor to the group's unit. Channels are found by
    name or by ``index`` (0-based position in the file's channel list, bioread's
    order) with :func:`~cardiolab.io.channels.locate_channel`. Each channel keeps its
    own sampling rate, ``base rate / frequency divider`` (a 4.1 file holds ECG at
    1000 Hz, EDA at 2000 Hz and respiration at 3.90625 Hz); every channel starts at
    the recording's first sample (t = 0).

Protocol epochs
    AcqKnowledge marks the start of each acquisition segment (a recording appended
    after a pause) with a global marker, type ``apnd`` ("Append") in 4.x/5.x, and text
    ``Segment <n>`` (3.x files have no marker types; some 4.x files type it ``defl``).
    A global marker that is of type ``apnd`` or reads ``Segment <n>`` is a segment
    marker; each segment marker starts the epoch ``(its text, its time, the next
    segment marker's time or the end of the recording)``. Every other marker (flags,
    respiration and EDA events, channel markers) is a point event, not an interval,
    and is ignored with a debug log. A marker outside the recording (bioread reports
    some 5.x sample indices as unsigned wraps of negative numbers, 2**32 - k) is
    ignored with a warning. Two segments with one text: no epochs are taken from the
    file (a warning says so), since epoch labels must be unique.
"""

from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import bioread
import numpy as np
from bioread import file_revisions
from bioread.reader import Reader

from ..errors import SessionFormatError, file_names
from ..schema import check_sampling_rate
from .channels import (
    assemble,
    file_token,
    lazy_channel,
    locate_channel,
    parse_channels,
    unit_factor,
)
from .registry import FileFormat, register_format

__all__ = [
    "AcqChannel",
    "AcqMarker",
    "AcqHeader",
    "read_acq_header",
    "read_acq_channel",
    "read_acq",
    "FORMAT",
]

log = logging.getLogger("cardiolab")

#: the oldest file revision bioread reads (AcqKnowledge 2.0a)
OLDEST_REVISION = file_revisions.V_20a
#: the newest file revision bioread knows (it reads newer ones with that layout)
NEWEST_REVISION = max(
    value
    for name, value in vars(file_revisions).items()
    if name.startswith("V_") and isinstance(value, int)
)

_SEGMENT_TEXT = re.compile(r"^Segment \d+$")


@dataclass(frozen=True)
class AcqChannel:
    """One channel of an AcqKnowledge file, as its headers give it.

    Attributes
    ----------
    index : int
        0-based position in the file's channel list.
    name : str
        The channel's name (label).
    units : str
        Its unit as written in the file (``"mV"``, ``"Volts"``, ``"microsiemens"``).
    samples_per_second : float
        Its sampling rate (Hz): the file's base rate / ``frequency_divider``.
    frequency_divider : int
    point_count : int
        Number of samples.
    storage : str
        ``"int16"`` (scaled on reading) or ``"float64"``.
    """

    index: int
    name: str
    units: str
    samples_per_second: float
    frequency_divider: int
    point_count: int
    storage: str


@dataclass(frozen=True)
class AcqMarker:
    """An event marker: text, time (s from the recording's start), type code (None
    in 3.x files) and channel number (None for a global marker)."""

    text: str
    time: float
    type_code: str | None
    channel_number: int | None


@dataclass(frozen=True)
class AcqHeader:
    """What the headers of an AcqKnowledge file say.

    Attributes
    ----------
    revision : int
        File revision (header field ``lVersion``; 42 is 3.7, 84 is 4.1.1, 132 is 5.0.1).
    compressed : bool
    base_rate : float
        The file's base sampling rate (Hz).
    duration : float
        Length of the recording (s): the longest channel's samples x divider / base rate.
    channels : tuple of AcqChannel
    markers : tuple of AcqMarker
    """

    revision: int
    compressed: bool
    base_rate: float
    duration: float
    channels: tuple[AcqChannel, ...]
    markers: tuple[AcqMarker, ...]

    @property
    def labels(self) -> list[str]:
        """The channel names, in file order."""
        return [c.name for c in self.channels]

    def epochs(self, source) -> list[tuple[str, float, float]]:
        """Protocol epochs from the segment markers (see the module docstring)."""
        starts, outside = [], []
        for m in self.markers:
            if not 0.0 <= m.time <= self.duration:
                outside.append(f"{m.text!r} at {m.time:g} s")
            elif m.channel_number is None and (
                m.type_code == "apnd" or _SEGMENT_TEXT.match(m.text.strip())
            ):
                starts.append((m.text.strip(), m.time))
            else:
                log.debug(
                    "%s: marker %r (type %r) at %g s is a point event, not a protocol "
                    "epoch; ignored",
                    source,
                    m.text,
                    m.type_code,
                    m.time,
                )
        if outside:
            log.warning(
                "%s: %d marker(s) outside the recording (0-%g s) ignored: %s",
                source,
                len(outside),
                self.duration,
                ", ".join(outside),
            )
        if not starts:
            return []
        starts.sort(key=lambda s: s[1])
        stops = [t for _, t in starts[1:]] + [self.duration]
        epochs = [(text, t0, t1) for (text, t0), t1 in zip(starts, stops, strict=True) if t1 > t0]
        labels = [e[0] for e in epochs]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            log.warning(
                "%s: segment markers %s name more than one segment; no protocol epochs "
                "taken from the file",
                source,
                repeated,
            )
            return []
        return epochs


def _check_revision(path: Path, head: bytes) -> int:
    """The file revision (``lVersion``, bytes 2-5, in the byte order that makes it
    smallest, as bioread guesses it); an error where bioread cannot read it."""
    if len(head) < 6:
        raise SessionFormatError(
            f"{path}: the file ends inside its graph header ({len(head)} bytes); not an "
            "AcqKnowledge file or cut short"
        )
    revision = min(struct.unpack("<I", head[2:6])[0], struct.unpack(">I", head[2:6])[0])
    if revision < OLDEST_REVISION or revision > 10 * NEWEST_REVISION:
        raise SessionFormatError(
            f"{path}: not a readable AcqKnowledge file: header field 'lVersion' (file "
            f"revision, bytes 2-5) is {revision}; bioread reads revisions "
            f"{OLDEST_REVISION} (AcqKnowledge 2.0) to {NEWEST_REVISION} (5.0.1) and later"
        )
    if revision > NEWEST_REVISION:
        log.warning(
            "%s: file revision %d is newer than bioread %s knows (%d); read with its newest layout",
            path,
            revision,
            bioread.__version__,
            NEWEST_REVISION,
        )
    return revision


def read_acq_header(path) -> AcqHeader:
    """Read the headers of an AcqKnowledge file, and check that its samples are there.

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    AcqHeader

    Raises
    ------
    SessionFormatError
        The file is missing or empty, its file revision is not one bioread reads, its
        headers cannot be read (not an AcqKnowledge file, or cut inside them), or it
        ends before the end of its sample data (uncompressed) or of a channel's
        compressed block.
    """
    path = Path(path)
    if not path.is_file():
        raise SessionFormatError(f"{path}: AcqKnowledge file not found")
    size = path.stat().st_size
    if size == 0:
        raise SessionFormatError(f"{path}: empty file (0 bytes); not an AcqKnowledge file")
    with path.open("rb") as f:
        revision = _check_revision(path, f.read(6))
        f.seek(0)
        try:
            reader = Reader.read_headers(f)
        except ZeroDivisionError:
            # bioread divides 1000 by the graph header's dSampleTime (ms per sample)
            raise SessionFormatError(
                f"{path}: header field 'dSampleTime' (ms per sample) is 0: no sampling rate"
            ) from None
        except Exception as err:  # bioread raises what its parsing meets
            raise SessionFormatError(
                f"{path}: AcqKnowledge headers not readable ({type(err).__name__}: {err}); "
                "not an AcqKnowledge file, or cut inside its headers"
            ) from None
    datafile = reader.datafile
    if datafile is None or not datafile.channels:
        raise SessionFormatError(
            f"{path}: AcqKnowledge headers not readable (file revision {revision}, "
            f"{size} bytes): the graph or channel headers are cut short or are not "
            "AcqKnowledge's"
        )
    chans = tuple(
        AcqChannel(
            i,
            str(c.name).strip(),
            str(c.units or "").strip(),
            float(c.samples_per_second),
            int(c.frequency_divider),
            int(c.point_count),
            "float64" if c.dtype.kind == "f" else f"int{8 * c.dtype.itemsize}",
        )
        for i, c in enumerate(datafile.channels)
    )
    if datafile.is_compressed:
        blocks = datafile.channel_compression_headers or []
        if len(blocks) != len(chans):
            raise SessionFormatError(
                f"{path}: the file ends inside its headers ({size} bytes): "
                f"{len(blocks)} of {len(chans)} channel compression headers readable"
            )
        for ch, block in zip(chans, blocks, strict=True):
            end = block.compressed_data_offset + block.compressed_data_len
            if end > size:
                raise SessionFormatError(
                    f"{path}: channel {ch.name!r}: its compressed samples end at byte "
                    f"{end}, but the file has {size} bytes (cut short)"
                )
    else:
        data_bytes = sum(c.point_count * c.sample_size for c in datafile.channels)
        end = reader.data_start_offset + data_bytes
        if end > size:
            raise SessionFormatError(
                f"{path}: the sample data ({data_bytes} bytes from byte "
                f"{reader.data_start_offset}, per the channels' point counts) end at byte "
                f"{end}, but the file has {size} bytes (cut short)"
            )
    if reader.event_markers is None:
        raise SessionFormatError(
            f"{path}: the file ends inside its headers or is damaged ({size} bytes): its marker "
            "header is not readable"
        )
    base_rate = check_sampling_rate(
        datafile.samples_per_second,
        source=path,
        field="header field 'dSampleTime' (1000 / ms per sample)",
    )
    duration = max(c.point_count * c.frequency_divider for c in chans) / base_rate
    markers = tuple(
        AcqMarker(
            str(m.text),
            m.sample_index / base_rate,
            m.type_code,
            None if m.channel_number is None else int(m.channel_number),
        )
        for m in reader.event_markers
    )
    return AcqHeader(revision, bool(datafile.is_compressed), base_rate, duration, chans, markers)


def read_acq_channel(path, index: int) -> np.ndarray:
    """The samples of one channel, in the channel's unit in the file (eager).

    Parameters
    ----------
    path : str or pathlib.Path
    index : int
        0-based position of the channel in the file (see :class:`AcqChannel`).

    Returns
    -------
    numpy.ndarray, shape (point_count,), float64
        bioread's scaled values: ``raw * scale + offset`` for 16-bit channels, the
        stored values for float64 channels.

    Raises
    ------
    SessionFormatError
        The samples are not readable, or are not as many as the header says (the
        file has changed since its header was read).
    """
    path = Path(path)
    header = read_acq_header(path)
    if not 0 <= index < len(header.channels):
        raise SessionFormatError(
            f"{path}: no channel at index {index} (the file has {len(header.channels)}: "
            f"{file_names(header.labels)})"
        )
    ch = header.channels[index]
    try:
        datafile = bioread.read(str(path), channel_indexes=[index])
        values = np.asarray(datafile.channels[index].data, dtype=np.float64)
    except Exception as err:  # bioread raises what its parsing meets
        raise SessionFormatError(
            f"{path}: channel {ch.name!r}: samples not readable ({type(err).__name__}: {err})"
        ) from None
    if values.shape != (ch.point_count,):
        raise SessionFormatError(
            f"{path}: channel {ch.name!r}: {values.size} samples read, but the header's "
            f"point count is {ch.point_count}; has the file changed since it was opened?"
        )
    return values


def _read_scaled(path, index: int, n_samples: int, factor: float) -> np.ndarray:
    """One channel in its group's unit (the delayed read behind each dask array)."""
    values = read_acq_channel(path, index)
    if values.size != n_samples:
        raise SessionFormatError(
            f"{path}: channel index {index}: {values.size} samples, {n_samples} when the "
            "file was opened; the file has changed"
        )
    return values * factor


def read_acq(path, channels):
    """Read a BIOPAC AcqKnowledge file (3.x-5.x) into a session node, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.acq`` file (uncompressed or compressed, either byte order).
    channels : mapping
        ``{channel name: {"group", "units"?, "index"?, "vessel"?}}``; the name as
        AcqKnowledge shows it (``"EKG - ERS100C"``), ``index`` its 0-based position
        where a name is not unique. ``units`` is needed only where the file gives
        none; given, it must agree with the file's.

    Returns
    -------
    xarray.DataTree
        Session node: one group per mapped channel at the channel's own sampling
        rate (ECG in mV, ABP in mmHg, LDF in PU, Doppler in cm/s; dask-backed, not
        read) and, where the file has segment markers, a ``protocol`` group (see the
        module docstring).

    Raises
    ------
    SessionFormatError
        The file is missing, empty, of a revision bioread does not read, not an
        AcqKnowledge file, cut short, or a mapped channel is not in it (the message
        lists those it has).
    UnitError
        A channel's unit is unknown to :mod:`cardiolab.units` (``microsiemens``), of
        another quantity than its group's (``Volts`` for ``abp``), or contradicts
        the mapping.
    """
    path = Path(path)
    chans = parse_channels(channels, path)
    header = read_acq_header(path)
    token = file_token(path)
    signals = []
    for ch in chans:
        i = locate_channel(ch, header.labels, path)
        info = header.channels[i]
        factor, unit = unit_factor(ch, info.units, path)
        samples = lazy_channel(
            _read_scaled,
            (path, i, info.point_count, factor),
            info.point_count,
            name=f"acq-{i}-{ch.name}-{token}-{factor}",
        )
        signals.append((ch, samples, info.samples_per_second, unit))
    return assemble(signals, path, header.epochs(path) or None)


FORMAT = register_format(
    FileFormat(
        name="acq",
        reader=read_acq,
        description="BIOPAC AcqKnowledge 3.x-5.x (bioread)",
        suffixes=(".acq",),
    )
)
