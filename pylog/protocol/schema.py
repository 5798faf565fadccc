"""Runtime base of the generated message classes (pylog/protocol/messages/).

A generated class carries a declarative description of its fields (FIELDS,
one Field per JSON field, with Kafka's version strings) and, for messages,
one encoder and one decoder function per valid version. This module holds
what those classes share: the base classes, the version-checked entry points
that turn any failure into ProtocolError, and a slow schema walk that runs
only after an encode failed, to name the offending field.
"""

import struct
from collections.abc import Mapping
from typing import Any, NamedTuple
from uuid import UUID

from .errors import ProtocolError, UnsupportedVersionError
from .types import ZERO_UUID

__all__ = [
    "Field", "Struct", "Message", "UNSET", "ZERO_UUID",
    "version_in", "fields_in_version", "struct_type", "ClassTable",
]


class _Unset:
    """Default-argument marker for array and struct fields: each object needs
    its own fresh list or struct, and None may be a legitimate (null) value."""

    __slots__ = ()

    def __repr__(self):
        return "UNSET"


UNSET = _Unset()


class Field(NamedTuple):
    """One schema field. Version sets use Kafka's syntax: "3+", "0-7", "4", "none"."""

    name: str                 # attribute name: snake_case of the JSON name
    type: str                 # JSON type: "int32", "string", "[]int32", "[]Topic", "Topic"
    versions: str
    default: Any = None       # () = empty array, ... = a default-constructed struct
    nullable_versions: str | None = None
    tag: int | None = None
    tagged_versions: str | None = None
    flexible_versions: str | None = None  # per-field override (RequestHeader.ClientId: "none")


_ranges: dict = {}


def _parse_versions(spec):
    if spec is None or spec == "none":
        return (1, 0)
    if spec.endswith("+"):
        return (int(spec[:-1]), 0x7FFF)
    lo, _, hi = spec.partition("-")
    return (int(lo), int(hi or lo))


def version_in(spec, version):
    """True if `version` lies in a Kafka version string such as "3+" or "0-7"."""
    r = _ranges.get(spec)
    if r is None:
        r = _ranges[spec] = _parse_versions(spec)
    return r[0] <= version <= r[1]


def struct_type(field):
    """The struct name of a struct or struct-array field, else None."""
    t = field.type[2:] if field.type.startswith("[]") else field.type
    return t if t[:1].isupper() else None


def fields_in_version(cls, version):
    """The Field entries of `cls` present in `version`."""
    return [f for f in cls.FIELDS if version_in(f.versions, version)]


class Struct:
    """Base of every generated struct. Subclasses list their fields in
    __slots__ (in schema order); tagged fields a decoder did not know are kept
    in _unknown_tagged_fields as (tag, bytes) pairs and written back on encode."""

    __slots__ = ("_unknown_tagged_fields",)
    FIELDS: tuple = ()

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        for name in self.__slots__:
            if getattr(self, name) != getattr(other, name):
                return False
        return self._unknown_tagged_fields == other._unknown_tagged_fields

    __hash__ = None  # mutable

    def __repr__(self):
        parts = [f"{n}={_short_repr(getattr(self, n))}" for n in self.__slots__]
        if self._unknown_tagged_fields:
            parts.append(f"_unknown_tagged_fields={self._unknown_tagged_fields!r}")
        return f"{type(self).__qualname__}({', '.join(parts)})"


def _short_repr(v):
    if isinstance(v, memoryview):
        return f"<{v.nbytes} bytes>"
    return repr(v)


_ENCODE_ERRORS = (struct.error, TypeError, AttributeError, ValueError, OverflowError,
                  ProtocolError)
_DECODE_ERRORS = (struct.error, IndexError, ValueError, OverflowError)


class Message(Struct):
    """A top-level schema: a request, response, header or data record.

    API_KEY is None for headers and data schemas. FLEXIBLE_MIN is the first
    flexible version (None if never flexible); flexible versions use compact
    encodings, tagged fields, request header v2 and response header v1.
    """

    __slots__ = ()
    API_KEY: int | None = None
    VALID_VERSIONS: tuple = (0, 0)
    FLEXIBLE_MIN: int | None = None
    DEPRECATED_VERSIONS: tuple | None = None
    LATEST_VERSION_UNSTABLE = False
    _ENCODERS: tuple = ()
    _DECODERS: tuple = ()

    @classmethod
    def is_flexible(cls, version):
        return cls.FLEXIBLE_MIN is not None and version >= cls.FLEXIBLE_MIN

    @classmethod
    def _check_version(cls, version):
        lo, hi = cls.VALID_VERSIONS
        if not lo <= version <= hi:
            raise UnsupportedVersionError(
                f"{cls.__name__} v{version} is not supported (valid versions {lo}-{hi})")
        return version - lo

    @classmethod
    def encode_into(cls, obj, version, out):
        """Appends obj's encoding to the bytearray `out`; on error `out` holds
        a partial write."""
        enc = cls._ENCODERS[cls._check_version(version)]
        if type(obj) is not cls:
            raise ProtocolError(f"{cls.__name__}.encode got a {type(obj).__name__}")
        try:
            enc(out, obj)
        except _ENCODE_ERRORS as e:
            where = explain_encode_error(cls, obj, version)
            raise ProtocolError(
                f"cannot encode {cls.__name__} v{version}: {where or e}") from e

    @classmethod
    def encode(cls, obj, version):
        out = bytearray()
        cls.encode_into(obj, version, out)
        return bytes(out)

    @classmethod
    def decode_from(cls, buf, pos, version):
        """Decodes one message at `pos`; returns (obj, end position). Pass a
        memoryview so that records fields are slices of it rather than copies."""
        dec = cls._DECODERS[cls._check_version(version)]
        try:
            return dec(buf, pos)
        except ProtocolError as e:
            raise ProtocolError(f"{cls.__name__} v{version}: {e}") from None
        except _DECODE_ERRORS as e:
            # Fixed-width fields are unpacked straight from the buffer; running
            # off its end surfaces here as struct.error.
            raise ProtocolError(f"{cls.__name__} v{version}: truncated or malformed: {e}") from None

    @classmethod
    def decode(cls, buf, version):
        """Decodes a whole buffer; bytes left over are an error."""
        mv = memoryview(buf)
        obj, pos = cls.decode_from(mv, 0, version)
        if pos != len(mv):
            raise ProtocolError(
                f"{cls.__name__} v{version}: {len(mv) - pos} trailing byte(s) after offset {pos}")
        return obj


class ClassTable(Mapping):
    """A read-only mapping (api key or schema name -> generated class) whose
    classes are looked up, and so their submodule imported, on first access.

    The keys are known without importing anything; iterating over values()
    or items() imports every class in the table. Any thread may use it: the
    import system serialises the submodule's import, and a concurrent first
    lookup stores the same class twice (a dict store, atomic under the GIL)."""

    __slots__ = ("_names", "_classes", "_resolve")

    def __init__(self, resolve, names):
        self._resolve = resolve  # class name -> class (the package's __getattr__)
        self._names = names      # key -> class name
        self._classes = {}       # key -> class, for the keys looked up so far

    def __getitem__(self, key):
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = self._resolve(self._names[key])
        return cls

    def get(self, key, default=None):
        # Mapping.get goes through a KeyError for unknown keys; framing asks
        # once per frame, so the resolved classes are answered from one dict.
        cls = self._classes.get(key)
        if cls is not None:
            return cls
        return self[key] if key in self._names else default

    def class_name(self, key):
        """The class name of key ("ProduceRequest"), None if unknown; imports nothing."""
        return self._names.get(key)

    def __contains__(self, key):
        return key in self._names

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def __repr__(self):
        return f"ClassTable({self._names!r})"


# --- encode diagnostics --------------------------------------------------------
# Only called after an encoder raised: the generated code stays free of
# per-field checks, and the user still learns which field was wrong.

_INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint16": (0, (1 << 16) - 1),
}


def explain_encode_error(message_cls, obj, version):
    return _explain(message_cls, message_cls, obj, version, message_cls.__name__)


def _explain(message_cls, cls, obj, version, path):
    if not isinstance(obj, cls):
        return f"{path}: expected {cls.__qualname__}, got {type(obj).__name__}"
    for f in fields_in_version(cls, version):
        where = f"{path}.{f.name}"
        value = getattr(obj, f.name)
        nullable = f.nullable_versions is not None and version_in(f.nullable_versions, version)
        if value is None:
            if not nullable:
                return f"{where}: None in a non-nullable field (v{version})"
            continue
        flexible = (version_in(f.flexible_versions, version) if f.flexible_versions
                    else message_cls.is_flexible(version))
        if f.type.startswith("[]"):
            if not isinstance(value, (list, tuple)):
                return f"{where}: expected a list, got {type(value).__name__}"
            elem = f.type[2:]
            for i, item in enumerate(value):
                problem = _explain_value(message_cls, elem, item, version, f"{where}[{i}]",
                                         flexible)
                if problem:
                    return problem
        else:
            problem = _explain_value(message_cls, f.type, value, version, where, flexible)
            if problem:
                return problem
    return None


def _explain_value(message_cls, type_, value, version, where, flexible):
    if type_ in _INT_RANGES:
        lo, hi = _INT_RANGES[type_]
        if not isinstance(value, int):
            return f"{where}: expected int, got {type(value).__name__}"
        if not lo <= value <= hi:
            return f"{where}: {value} out of {type_} range"
    elif type_ == "float64":
        if not isinstance(value, (int, float)):
            return f"{where}: expected float, got {type(value).__name__}"
    elif type_ == "bool":
        if not isinstance(value, (bool, int)):
            return f"{where}: expected bool, got {type(value).__name__}"
    elif type_ == "string":
        if not isinstance(value, str):
            return f"{where}: expected str, got {type(value).__name__}"
        try:
            n = len(value.encode())
        except UnicodeEncodeError as e:
            return f"{where}: not encodable as UTF-8: {e.reason}"
        if not flexible and n > 0x7FFF:
            return f"{where}: {n} bytes do not fit an int16 length"
    elif type_ in ("bytes", "records"):
        try:
            memoryview(value)
        except TypeError:
            return f"{where}: expected a bytes-like object, got {type(value).__name__}"
    elif type_ == "uuid":
        if not isinstance(value, UUID):
            return f"{where}: expected uuid.UUID, got {type(value).__name__}"
    else:
        return _explain(message_cls, getattr(message_cls, type_), value, version, where)
    return None
