"""sc2s3.catalog_stream
~~~~~~~~~~~~~~~~~~~~~~~~

Catalogs read as streams, for the commands that go through whole archives (``status``,
``verify``, ``restore``): their memory is one track entry and a read buffer, whatever the number
of tracks and accounts. (A 10,000-track catalog is ~10 MB of JSON;
:meth:`sc2s3.catalog.CatalogStore.load` holds all of it, which the mirror needs and these commands
do not.)

The catalog's bytes come from S3's streaming body and are parsed by ijson (its C backend, yajl):
each member of ``tracks`` is built as a dict by ``kvitems``, validated by the very pydantic model
the catalog's schema uses for it (:class:`~sc2s3.catalog.TrackEntry`), handed to the
caller and dropped. On the way, the parser's events of the top level are checked (an object of
Catalog's keys, each once, whose ``tracks`` is an object) and the other top-level fields
(``format``, ``user_urn``, ``permalink``…), small, are kept and validated once the stream ends,
wherever they stand in it: before ``tracks`` (as sc2s3 writes them) or after it.

Nothing of an account may be read or written before its whole catalog is checked: that its
``user_urn`` is its folder's, and that it is valid to the last byte. So :func:`scan_catalog` is a
first pass that checks everything and keeps only counters, and whatever its ``on_track`` keeps (a
random sample for ``verify --sample``); no entry is acted on until it returns. The commands act in
a second pass, :meth:`CatalogScan.entries`, over the same bytes: the first pass copies them to a
temporary file (in memory up to :data:`SPOOL_MEMORY_BYTES`), so the second reads exactly what was
checked, not a version the daemon wrote meanwhile, with one GET.

The verdicts are ``CatalogDocument.model_validate_json``'s (the schema's) but where yajl reads
otherwise: a lone UTF-16 surrogate escape is "?" to it (no UTF-8 text can hold one, and sc2s3
never writes one), and an integer beyond 64 bits is invalid (no size comes near). And for one rule
of our own: a top-level key given twice (which sc2s3 never writes, and where pydantic silently
keeps the last) makes the catalog invalid, since a second ``user_urn`` or ``tracks`` would make
the first pass check something other than what is read. A track URN given twice inside ``tracks``
is two entries: each is checked (and restored) on its own; remembering every URN to collapse them
would cost memory in proportion to the tracks. One value (a track entry, a top-level field) may
take at most :data:`MAX_VALUE_BYTES`, so a hostile catalog cannot take the memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import ijson
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from .archive import Layout
from .catalog import CatalogHeader, TrackEntry
from .errors import Sc2s3Error, TemporaryError

READ_BYTES = 64 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024
# The longest track entry (or other value) accepted: a real one is about 1 KB, plus ~0.7 KB per
# further revision or metadata edit.
MAX_VALUE_BYTES = 16 * 1024 * 1024
UNARCHIVABLE_SHOWN = 20  # tracks that cannot be archived, listed by name per account

# The C backend, by name: ijson would fall back to its pure-Python one, slower and reading some
# text otherwise (every wheel of the lock has it).
_YAJL = ijson.get_backend("yajl2_c")
_HEADER_FIELDS = CatalogHeader.model_fields


class CatalogInvalid(Sc2s3Error):
    """A catalog in the bucket is not valid JSON, not a valid sc2s3 catalog, or not its folder's."""


TrackCallback = Callable[[str, TrackEntry], None]


class _Source:
    """``read(n) -> bytes`` as the file ijson reads, counting the bytes: where an error is, and
    how long the value being parsed (``within``, since byte ``mark``) is so far."""

    def __init__(self, read: Callable[[int], bytes]):
        self._read = read
        self.start = self.end = self.mark = 0  # the last chunk read: bytes start..end
        self.within = "before the first field"

    def read(self, size: int) -> bytes:
        if not size:  # ijson's probe for bytes or text
            return b""
        data = self._read(size)
        self.start, self.end = self.end, self.end + len(data)
        # Never valid anywhere in JSON text, but white space to yajl (pydantic refuses them).
        if b"\x0b" in data or b"\x0c" in data:
            raise CatalogInvalid(f"invalid JSON {self.where}: a vertical tab or form feed")
        if self.end - self.mark > MAX_VALUE_BYTES:
            raise CatalogInvalid(f"more than {MAX_VALUE_BYTES} bytes in one value ({self.within})")
        return data

    @property
    def where(self) -> str:
        """Where the last chunk read is (where a JSON error found in it is)."""
        return f"at byte {self.end}" if self.start == self.end else f"in bytes {self.start}-{self.end}"


def parse_catalog(read: Callable[[int], bytes], on_track: TrackCallback | None = None,
                  read_bytes: int = READ_BYTES) -> CatalogHeader:
    """Parse a catalog from ``read(n) -> bytes`` (b"" at the end), calling ``on_track(urn,
    entry)`` for each track entry in order, each validated as :class:`TrackEntry`. Returns the
    top-level fields (a :class:`~sc2s3.catalog.CatalogHeader`), validated at the end.

    :raises CatalogInvalid: not JSON, not a catalog (with pydantic's message where it has one),
        or a top-level key given twice. ``on_track`` may have been called for entries before the
        problem: a caller acts on nothing before this returns.
    """
    source, header = _Source(read), {}
    events = _YAJL.parse(source, buf_size=read_bytes, use_float=True)
    try:
        for urn, value in _YAJL.kvitems(_checked(events, source, header), "tracks"):
            entry = _entry(urn, value)
            if on_track is not None:
                on_track(urn, entry)
    except ijson.JSONError as exc:
        reason = exc.args[0] if exc.args else ""
        if isinstance(reason, bytes):  # yajl's message quotes the text, which may not be UTF-8
            reason = reason.decode("utf-8", "replace")
        reason = reason.splitlines()[0] if reason else "not JSON"
        raise CatalogInvalid(f"invalid JSON {source.where}: {reason}") from None
    except UnicodeDecodeError as exc:  # what yajl's own check lets through
        raise CatalogInvalid(f"not UTF-8 {source.where}: {exc.reason}") from None
    try:
        return CatalogHeader.model_validate(header)
    except ValidationError as exc:
        raise CatalogInvalid(_first_error(exc)) from exc


def _checked(events: Iterable[tuple[str, str, Any]], source: _Source,
             header: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """ijson's ``events``, passed on once the top level is seen to be a catalog's: an object of
    known keys, each given once, whose ``tracks`` is an object; the other fields' values are
    built into ``header``."""
    key, seen, builder = None, set(), None
    for prefix, event, value in events:
        if prefix == "":
            if builder is not None:  # the value of the previous field is whole
                header[key], builder = builder.value, None
            if event == "map_key":
                if value in seen:
                    raise CatalogInvalid(f"field {value!r} is given twice")
                if value != "tracks" and value not in _HEADER_FIELDS:
                    raise CatalogInvalid(f"Extra inputs are not permitted (field {value!r})")
                key, source.mark, source.within = value, source.end, f"field {value!r}"
                seen.add(key)
                builder = None if key == "tracks" else ijson.ObjectBuilder()
            elif event not in ("start_map", "end_map"):
                raise CatalogInvalid("Input should be an object")
        elif builder is not None:
            builder.event(event, value)
        elif prefix == "tracks":
            if event == "map_key":
                source.mark, source.within = source.end, f"the entry of track {value!r}"
            elif event not in ("start_map", "end_map"):
                raise CatalogInvalid("Input should be an object (at tracks)")
        yield prefix, event, value


def _entry(urn: str, value: object) -> TrackEntry:
    try:
        return TrackEntry.model_validate(value)
    except ValidationError as exc:
        raise CatalogInvalid(_first_error(exc, "tracks", urn)) from exc


def _first_error(exc: ValidationError, *within: str) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in (*within, *error["loc"]))
    return f"{error['msg']}" + (f" (at {where})" if where else "")


@dataclass
class CatalogScan:
    """What the first pass over one account's catalog found: the top-level fields, counters, and
    (``keep``) the bytes it checked, for :meth:`entries`.

    ``exists``: there is a catalog object (without one the account has no tracks yet);
    ``entries_count``: track entries; ``tracks``: entries with at least one revision;
    ``revisions``, ``bytes`` (their sizes), ``deleted_upstream`` (entries marked so)."""

    key: str
    user_urn: str
    exists: bool = False
    format: str = ""
    permalink: str = ""
    username: str = ""
    updated_at: str = ""
    entries_count: int = 0
    tracks: int = 0
    revisions: int = 0
    bytes: int = 0
    deleted_upstream: int = 0
    private: int = 0             # archived tracks listed as private
    unarchivable: int = 0        # tracks SoundCloud serves no audio for, never archived
    unarchivable_shown: list[dict] = field(default_factory=list)  # the first few, with reasons
    listing: dict | None = None  # the header's counts of the last complete listing
    _spool: IO[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The account as a person calls it: its permalink, else its user URN."""
        return self.permalink or self.user_urn

    def count(self, entry: TrackEntry, urn: str = "") -> None:
        self.entries_count += 1
        self.tracks += bool(entry.revisions)
        self.revisions += len(entry.revisions)
        self.bytes += sum(revision.size for revision in entry.revisions)
        self.deleted_upstream += bool(entry.deleted_upstream_at)
        self.private += bool(entry.revisions) and entry.sharing == "private"
        if entry.unarchivable and not entry.revisions:
            self.unarchivable += 1
            if len(self.unarchivable_shown) < UNARCHIVABLE_SHOWN:
                self.unarchivable_shown.append({"urn": urn, "title": entry.title,
                                                "reason": entry.unarchivable})

    def entries(self) -> Iterator[tuple[str, TrackEntry]]:
        """``(track URN, entry)`` in the catalog's order, from the bytes the scan checked
        (``scan_catalog(..., keep=True)``); one entry in memory at a time."""
        if not self.exists:
            return
        if self._spool is None:
            raise RuntimeError("scan_catalog(keep=True) keeps the catalog for entries()")
        self._spool.seek(0)
        # Checked by the scan: "tracks" is given once, at the top level, as an object.
        for urn, value in _YAJL.kvitems(self._spool, "tracks", buf_size=READ_BYTES, use_float=True):
            yield urn, _entry(urn, value)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def __enter__(self) -> CatalogScan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def scan_catalog(s3, bucket: str, layout: Layout, user_urn: str,
                 on_track: TrackCallback | None = None, *, keep: bool = False) -> CatalogScan:
    """First pass over the catalog of the account folder ``user_urn``: streams it from S3,
    validates every entry (calling ``on_track(urn, entry)`` for each, after counting it) and the
    top-level fields, and checks that the catalog's ``user_urn`` is the folder's. A missing
    catalog is an account without tracks (``exists`` False).

    ``keep``: keep the bytes for :meth:`CatalogScan.entries` (close the scan when done: a
    context manager).

    :raises CatalogInvalid: the catalog is invalid or another account's (``on_track`` may have
        seen entries of it: act on none).
    :raises TemporaryError: S3 unreachable.
    """
    key = layout.catalog(user_urn)
    scan = CatalogScan(key=key, user_urn=user_urn)
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return scan
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    except BotoCoreError as exc:
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    body = answer["Body"]
    spool = tempfile.SpooledTemporaryFile(SPOOL_MEMORY_BYTES) if keep else None  # noqa: SIM115

    def read(size: int) -> bytes:
        try:
            data = body.read(size)
        except (BotoCoreError, OSError) as exc:
            raise TemporaryError(f"reading {key} failed: {exc}") from exc
        if spool is not None:
            spool.write(data)
        return data

    def counted(urn: str, entry: TrackEntry) -> None:
        scan.count(entry, urn)
        if on_track is not None:
            on_track(urn, entry)

    try:
        try:
            header = parse_catalog(read, counted)
        except CatalogInvalid as exc:
            raise CatalogInvalid(f"{key} is not a valid sc2s3 catalog; fix or remove it: {exc}") from exc
        finally:
            body.close()
        if header.user_urn != user_urn:
            raise CatalogInvalid(f"{key} belongs to {header.user_urn}, not {user_urn}")
    except BaseException:
        if spool is not None:
            spool.close()
        raise
    scan.exists = True
    scan.format, scan.permalink = header.format, header.permalink
    scan.username, scan.updated_at = header.username, header.updated_at
    scan.listing = header.listing
    scan._spool = spool
    return scan
