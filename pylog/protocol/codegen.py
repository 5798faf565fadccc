"""Generate pylog/protocol/messages/ from Kafka's JSON message schemas.

    python -m pylog.protocol.codegen [--schemas DIR] [--out OUT] [--only NAMES]

DIR defaults to shared/kafka-protocol/messages beside the repository (or
beside a folder above it), OUT to the messages package beside this module: an
__init__.py that imports the submodule of a class on its first use, and one
submodule per API (request and response), one for the headers and one per
data schema, so that importing the package costs almost nothing and each API
is paid for when it is first used. An OUT ending in .py gets every selected
schema in that one module instead (group_records.py). The output is
committed: the project must build and run without the schemas.

What is generated, per schema file (request, response, header or data):
- a class named as in Kafka (FetchResponse) with one nested class per struct
  (FetchResponse.PartitionData), attributes in snake_case, and FIELDS, a
  declarative list of Field entries using Kafka's version strings;
- straight-line encode/decode functions, the fastest form in CPython: one per
  distinct wire layout of each struct rather than one per version, so
  versions that share a layout (Produce v3-v8 requests, say) share code.
  `_e_X_vN` / `_d_X_vN` are named after the first version N with that layout
  and the class's _ENCODERS/_DECODERS tables map every valid version to one.

Consecutive fixed-width fields are packed and unpacked by one precompiled
struct.Struct call, which is where most of the speed comes from. Decoders do
not bounds-check those calls themselves: Message.decode_from turns the
struct.error of a short buffer into ProtocolError.
"""

import argparse
import json
import keyword
import re
import sys
from pathlib import Path

from . import types

HERE = Path(__file__).resolve().parent


def _find_schemas():
    """shared/kafka-protocol/messages beside the repository or beside any
    folder above it (a git worktree nested one level deeper finds the same)."""
    for up in HERE.parents[1].parents:
        candidate = up / "shared" / "kafka-protocol" / "messages"
        if candidate.is_dir():
            return candidate
    return HERE.parents[1].parent / "shared" / "kafka-protocol" / "messages"


DEFAULT_SCHEMAS = _find_schemas()
DEFAULT_OUT = HERE / "messages"

COMMAND = "python -m pylog.protocol.codegen"

# JSON type -> (struct format, size) for fields packed with struct.Struct.
FIXED = {
    "int8": ("b", 1), "int16": ("h", 2), "int32": ("i", 4), "int64": ("q", 8),
    "uint16": ("H", 2), "float64": ("d", 8), "bool": ("?", 1), "uuid": ("16s", 16),
}
SCALARS = set(FIXED) | {"string", "bytes", "records"}
# Names the generated functions use for their own locals and helpers.
RESERVED_ATTRS = {"buf", "pos", "out", "o", "len", "range", "list", "bytes", "self"}
RESERVED_STRUCTS = {"Field", "Struct", "Message", "UNSET", "UUID", "ZERO_UUID"}

MAX_VERSION = 0x7FFF


# --- reading the schemas -------------------------------------------------------

def strip_comments(text):
    """Drops // comments (Kafka's licence headers and notes) outside strings."""
    out = []
    for line in text.splitlines():
        in_string = escaped = False
        for i, ch in enumerate(line):
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "/" and line.startswith("//", i):
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


class Versions:
    """A Kafka version set: "3+", "0-7", "4" or "none"."""

    def __init__(self, spec):
        self.spec = spec.strip()
        if self.spec == "none":
            self.lo, self.hi = 1, 0
        elif self.spec.endswith("+"):
            self.lo, self.hi = int(self.spec[:-1]), MAX_VERSION
        else:
            lo, _, hi = self.spec.partition("-")
            self.lo, self.hi = int(lo), int(hi or lo)

    def __contains__(self, v):
        return self.lo <= v <= self.hi

    def covers(self, lo, hi):
        return self.lo <= lo and hi <= self.hi


def snake_case(name):
    """ThrottleTimeMs -> throttle_time_ms, KRaftVersion -> k_raft_version,
    V3AndBelowTopics -> v3_and_below_topics."""
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    s = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", s)
    return s.lower()


class FieldSpec:
    def __init__(self, d, where):
        self.json_name = d["name"]
        self.attr = snake_case(self.json_name)
        self.type = d["type"]
        self.versions = Versions(d["versions"])
        self.nullable = Versions(d["nullableVersions"]) if "nullableVersions" in d else None
        self.tagged = Versions(d["taggedVersions"]) if "taggedVersions" in d else None
        self.tag = d.get("tag")
        self.default = d.get("default")
        self.flexible = Versions(d["flexibleVersions"]) if "flexibleVersions" in d else None
        self.fields = [FieldSpec(f, f"{where}.{d['name']}") for f in d.get("fields", ())]
        self.is_array = self.type.startswith("[]")
        self.elem = self.type[2:] if self.is_array else self.type
        self.struct = None if self.elem in SCALARS else self.elem
        if (self.tag is None) != (self.tagged is None):
            raise ValueError(f"{where}.{self.json_name}: tag and taggedVersions go together")
        if keyword.iskeyword(self.attr) or self.attr in RESERVED_ATTRS:
            raise ValueError(f"{where}.{self.json_name}: attribute name {self.attr!r} is reserved")

    def nullable_in(self, v):
        return self.nullable is not None and v in self.nullable

    def tagged_in(self, v):
        return self.tagged is not None and v in self.tagged


class MessageSpec:
    def __init__(self, d, path):
        self.name = d["name"]
        self.kind = d["type"]
        self.api_key = d.get("apiKey")
        valid = Versions(d["validVersions"])
        self.lo, self.hi = valid.lo, valid.hi
        self.flexible = Versions(d.get("flexibleVersions", "none"))
        self.deprecated = Versions(d["deprecatedVersions"]) if "deprecatedVersions" in d else None
        self.unstable = bool(d.get("latestVersionUnstable", False))
        self.fields = [FieldSpec(f, self.name) for f in d["fields"]]
        # Every struct of the message by name: inline ones and commonStructs.
        self.structs = {self.name: self.fields}
        self.struct_order = []  # the order in which classes are emitted
        for c in d.get("commonStructs", ()):
            fields = [FieldSpec(f, c["name"]) for f in c["fields"]]
            self._collect(fields)
            self._add_struct(c["name"], fields)
        self._collect(self.fields)
        for f in self._all_fields():
            if f.struct and f.struct not in self.structs:
                raise ValueError(f"{path}: unknown type {f.type!r}")

    def _add_struct(self, name, fields):
        if name in self.structs:
            raise ValueError(f"{self.name}: struct {name} defined twice")
        if name in RESERVED_STRUCTS:
            raise ValueError(f"{self.name}: struct name {name} is reserved")
        self.structs[name] = fields
        self.struct_order.append(name)

    def _collect(self, fields):
        for f in fields:
            if f.fields:
                self._collect(f.fields)
                self._add_struct(f.struct, f.fields)

    def _all_fields(self):
        for fields in self.structs.values():
            yield from fields

    def flexible_in(self, v):
        return v in self.flexible


def load_schema(path):
    return json.loads(strip_comments(Path(path).read_text(encoding="utf-8")))


# APIs taken from shared/kafka-protocol-4.5/messages when generating from
# shared/kafka-protocol/messages (the rest stays on the old snapshot until each
# API moves on its own: the 4.5 one drops versions pylog still serves):
# KIP-932 (share groups) became stable with version 1 there, the only version
# clients send (KAFKA-NOTES §11.1), the older snapshot holding only the
# early-access version 0 that Kafka removed; ConsumerGroupDescribe v1 adds
# MemberType (KIP-1099).
NEWER_SCHEMAS = frozenset(
    f"{api}{kind}" for kind in ("Request", "Response") for api in (
        "ShareGroupHeartbeat", "ShareGroupDescribe", "ShareFetch", "ShareAcknowledge",
        "InitializeShareGroupState", "ReadShareGroupState", "WriteShareGroupState",
        "DeleteShareGroupState", "ReadShareGroupStateSummary", "DescribeShareGroupOffsets",
        "AlterShareGroupOffsets", "DeleteShareGroupOffsets", "ConsumerGroupDescribe"))


def _newer_schema(path):
    newer = path.parents[2] / "kafka-protocol-4.5" / path.parent.name / path.name
    if path.stem in NEWER_SCHEMAS and path.parent.parent.name == "kafka-protocol" and newer.is_file():
        return newer
    return path


def load_specs(schemas_dir):
    specs = []
    paths = sorted(Path(schemas_dir).glob("*.json"))
    have = {p.stem for p in paths}
    for name in sorted(NEWER_SCHEMAS - have):    # APIs the older snapshot does not have at all
        newer = _newer_schema(Path(schemas_dir) / f"{name}.json")
        if newer.is_file():
            paths.append(newer)
    for path in paths:
        path = _newer_schema(path)
        specs.append(MessageSpec(load_schema(path), path))
    if not specs:
        raise SystemExit(f"no *.json schemas in {schemas_dir}")
    kind_order = {"header": 0, "request": 1, "response": 1, "data": 2}
    specs.sort(key=lambda s: (kind_order[s.kind], s.api_key if s.api_key is not None else -1,
                              s.kind != "request", s.name))
    return specs


# --- values --------------------------------------------------------------------

def default_value(f, spec):
    """The Python default of a field: the JSON `default`, else the zero value
    of its type, else None when the field is nullable in every version it has.
    Returns the source text of the value, or None for array/struct defaults
    that must be built per object."""
    lo, hi = max(f.versions.lo, spec.lo), min(f.versions.hi, spec.hi)
    always_nullable = f.nullable is not None and (lo > hi or f.nullable.covers(lo, hi))
    d = f.default
    if d == "null" or (d is None and always_nullable and not f.is_array and f.struct is None):
        return "None"
    if f.is_array or f.struct:
        if d is None and always_nullable:
            return "None"
        if d not in (None, ""):
            raise ValueError(f"{spec.name}.{f.json_name}: unsupported default {d!r}")
        return None
    t = f.type
    if t in ("int8", "int16", "int32", "int64", "uint16"):
        return repr(int(str(d), 0)) if d not in (None, "") else "0"
    if t == "float64":
        return repr(float(d)) if d not in (None, "") else "0.0"
    if t == "bool":
        return repr(d in (True, "true")) if d is not None else "False"
    if t == "string":
        return repr(d or "")
    if t in ("bytes", "records"):
        if d not in (None, ""):
            raise ValueError(f"{spec.name}.{f.json_name}: unsupported default {d!r}")
        return "b''"
    if t == "uuid":
        if d not in (None, ""):
            raise ValueError(f"{spec.name}.{f.json_name}: unsupported default {d!r}")
        return "ZERO_UUID"
    raise ValueError(f"{spec.name}.{f.json_name}: unknown type {t!r}")


def _reader_writer(kind, t, nullable, compact):
    base = {"string": "string", "bytes": "bytes", "records": "records"}[t]
    return (f"{kind}_{'compact_' if compact else ''}{'nullable_' if nullable else ''}{base}")


# --- code generation ---------------------------------------------------------------

class MessageGen:
    def __init__(self, spec, formats):
        self.spec = spec
        self.formats = formats   # shared: struct format -> constant name
        self.funcs = []          # function source blocks, callees first
        self.names = {}          # (kind, struct, version) -> function name
        self.by_body = {}        # (kind, struct, body) -> function name
        self.tagged_defaults = set()  # structs whose _DEFAULT instance encoders compare with

    # names
    def cls_ref(self, sname):
        return self.spec.name if sname == self.spec.name else f"{self.spec.name}.{sname}"

    def fmt_const(self, fmt):
        name = self.formats.get(fmt)
        if name is None:
            name = self.formats[fmt] = "_S_" + fmt.lstrip(">").replace("16s", "U").replace("?", "o")
        return name

    def _function(self, kind, sname, v, body, signature):
        key = (kind, sname, v)
        text = "\n".join(body) if body else "    pass"
        name = self.by_body.get((kind, sname, text))
        if name is None:
            prefix = self.spec.name if sname == self.spec.name else f"{self.spec.name}_{sname}"
            name = f"_{kind}_{prefix}_v{v}"
            self.by_body[(kind, sname, text)] = name
            self.funcs.append(f"def {name}({signature}):\n{text}\n")
        self.names[key] = name
        return name

    def encoder(self, sname, v):
        name = self.names.get(("e", sname, v))
        return name or self._function("e", sname, v, self.encode_body(sname, v), "out, o")

    def decoder(self, sname, v):
        name = self.names.get(("d", sname, v))
        return name or self._function("d", sname, v, self.decode_body(sname, v), "buf, pos")

    def _present(self, sname, v):
        return [f for f in self.spec.structs[sname] if v in f.versions]

    def _compact(self, f, v):
        return v in f.flexible if f.flexible is not None else self.spec.flexible_in(v)

    # encoding
    def encode_body(self, sname, v):
        lines, group = [], []
        flexible = self.spec.flexible_in(v)

        def flush():
            if group:
                fmt = "".join(g[0] for g in group)
                args = ", ".join(g[1] for g in group)
                lines.append(f"    out += {self.fmt_const('>' + fmt)}.pack({args})")
                group.clear()

        for f in self._present(sname, v):
            if flexible and f.tagged_in(v):
                continue
            if f.type in FIXED:
                expr = f"o.{f.attr}.bytes" if f.type == "uuid" else f"o.{f.attr}"
                group.append((FIXED[f.type][0], expr))
                continue
            flush()
            lines += self.encode_value(f, v, f"o.{f.attr}", "out", "    ", False)
        flush()
        if flexible:
            lines += self.encode_tags(sname, v)
        return lines

    def encode_value(self, f, v, expr, out, ind, in_tag):
        nullable = f.nullable_in(v)
        compact = self._compact(f, v)
        t = f.type
        if t in FIXED:
            code = FIXED[t][0]
            value = f"{expr}.bytes" if t == "uuid" else expr
            return [f"{ind}{out} += {self.fmt_const('>' + code)}.pack({value})"]
        if f.struct and not f.is_array:
            fn = self.encoder(f.struct, v)
            if not nullable:
                return [f"{ind}{fn}({out}, {expr})"]
            # Presence marker: int8 -1/1 inline, unsigned varint 0/1 inside a
            # tagged field (as Kafka's generator writes them).
            null, present = ("0", "1") if in_tag else ("255", "1")
            return [f"{ind}_s = {expr}",
                    f"{ind}if _s is None:",
                    f"{ind}    {out}.append({null})",
                    f"{ind}else:",
                    f"{ind}    {out}.append({present})",
                    f"{ind}    {fn}({out}, _s)"]
        if not f.is_array:
            return [f"{ind}{_reader_writer('write', t, nullable, compact)}({out}, {expr})"]
        array = f"{'compact_' if compact else ''}{'nullable_' if nullable else ''}array"
        elem = f.elem
        if f.struct:
            return [f"{ind}write_{array}({out}, {expr}, {self.encoder(f.struct, v)})"]
        if elem == "uuid":
            return [f"{ind}write_{array}({out}, {expr}, write_uuid)"]
        if elem not in FIXED:
            w = _reader_writer("write", elem, False, compact)
            return [f"{ind}write_{array}({out}, {expr}, {w})"]
        # Fixed-width elements (replica lists, partition ids): one pack call.
        code = FIXED[elem][0]
        writer = "write_compact_fixed_array" if compact else "write_fixed_array"
        if not nullable:
            return [f"{ind}{writer}({out}, {code!r}, {expr})"]
        null = f"{out}.append(0)" if compact else f"{out} += b'\\xff\\xff\\xff\\xff'"
        return [f"{ind}_a = {expr}",
                f"{ind}if _a is None:",
                f"{ind}    {null}",
                f"{ind}else:",
                f"{ind}    {writer}({out}, {code!r}, _a)"]

    def encode_tags(self, sname, v):
        tagged = sorted((f for f in self._present(sname, v) if f.tagged_in(v)), key=lambda f: f.tag)
        if not tagged:
            return ["    _u = o._unknown_tagged_fields",
                    "    if _u:",
                    "        write_tagged_fields(out, _u)",
                    "    else:",
                    "        out.append(0)"]
        lines = ["    _u = o._unknown_tagged_fields",
                 "    _tags = [] if _u is None else list(_u)"]
        for f in tagged:
            # Kafka never writes a tagged field holding its default value, and
            # some clients mis-skip ones they do not expect (KAFKA-NOTES 9.15).
            d = default_value(f, self.spec)
            if d == "None":
                cond = "_v is not None"
            elif f.is_array:
                cond = "_v != []"
            elif f.struct:
                self.tagged_defaults.add(f.struct)
                cond = f"_v != {self.cls_ref(f.struct)}._DEFAULT"
            elif f.type == "bool":
                cond = "not _v" if d == "True" else "_v"
            else:
                cond = f"_v != {d}"
            lines += [f"    _v = o.{f.attr}",
                      f"    if {cond}:",
                      "        _t = bytearray()"]
            lines += self.encode_value(f, v, "_v", "_t", "        ", True)
            lines.append(f"        _tags.append(({f.tag}, _t))")
        lines.append("    write_tagged_fields(out, _tags)")
        return lines

    # decoding
    def decode_body(self, sname, v):
        lines, group = [], []
        flexible = self.spec.flexible_in(v)

        def flush():
            if not group:
                return
            fmt = "".join(FIXED[f.type][0] for f in group)
            size = sum(FIXED[f.type][1] for f in group)
            targets = ", ".join(f.attr for f in group) + ("," if len(group) == 1 else "")
            lines.append(f"    {targets} = {self.fmt_const('>' + fmt)}.unpack_from(buf, pos)")
            lines.append(f"    pos += {size}")
            for f in group:
                if f.type == "uuid":
                    lines.append(f"    {f.attr} = UUID(bytes={f.attr})")
            group.clear()

        present = self._present(sname, v)
        for f in present:
            if flexible and f.tagged_in(v):
                continue
            if f.type in FIXED:
                group.append(f)
                continue
            flush()
            lines += self.decode_value(f, v, f.attr, "    ", False)
        flush()
        unknown = "None"
        if flexible:
            unknown = "_unknown"
            lines += self.decode_tags(sname, v, present)
        args = []
        for f in self.spec.structs[sname]:
            if f in present:
                args.append(f.attr)
            else:
                d = default_value(f, self.spec)
                args.append(d if d is not None else "UNSET")
        if flexible:
            args.append(unknown)
        lines.append(f"    return {self.cls_ref(sname)}({', '.join(args)}), pos")
        return lines

    def decode_value(self, f, v, target, ind, in_tag):
        nullable = f.nullable_in(v)
        compact = self._compact(f, v)
        t = f.type
        if t in FIXED:
            fmt, size = FIXED[t]
            lines = [f"{ind}{target}, = {self.fmt_const('>' + fmt)}.unpack_from(buf, pos)",
                     f"{ind}pos += {size}"]
            if t == "uuid":
                lines.append(f"{ind}{target} = UUID(bytes={target})")
            return lines
        if f.struct and not f.is_array:
            fn = self.decoder(f.struct, v)
            if not nullable:
                return [f"{ind}{target}, pos = {fn}(buf, pos)"]
            if in_tag:
                marker = [f"{ind}_m, pos = read_unsigned_varint(buf, pos)", f"{ind}if _m == 0:"]
            else:
                marker = [f"{ind}_m, pos = read_int8(buf, pos)", f"{ind}if _m < 0:"]
            return marker + [f"{ind}    {target} = None",
                             f"{ind}else:",
                             f"{ind}    {target}, pos = {fn}(buf, pos)"]
        if not f.is_array:
            reader = _reader_writer("read", t, nullable, compact)
            return [f"{ind}{target}, pos = {reader}(buf, pos)"]
        array = f"{'compact_' if compact else ''}{'nullable_' if nullable else ''}array"
        elem = f.elem
        if f.struct:
            return [f"{ind}{target}, pos = read_{array}(buf, pos, {self.decoder(f.struct, v)})"]
        if elem == "uuid":
            return [f"{ind}{target}, pos = read_{array}(buf, pos, read_uuid)"]
        if elem not in FIXED:
            r = _reader_writer("read", elem, False, compact)
            return [f"{ind}{target}, pos = read_{array}(buf, pos, {r})"]
        fmt, size = FIXED[elem]
        lines = [f"{ind}_n, pos = read_{array}_length(buf, pos)"]
        inner = ind
        if nullable:
            lines += [f"{ind}if _n < 0:", f"{ind}    {target} = None", f"{ind}else:"]
            inner = ind + "    "
        lines.append(f"{inner}{target}, pos = read_fixed_array(buf, pos, {fmt!r}, {size}, _n)")
        return lines

    def decode_tags(self, sname, v, present):
        tagged = sorted((f for f in present if f.tagged_in(v)), key=lambda f: f.tag)
        if not tagged:
            return ["    _unknown, pos = read_tagged_fields(buf, pos)"]
        lines = []
        for f in tagged:
            d = default_value(f, self.spec)
            lines.append(f"    {f.attr} = {d if d is not None else 'UNSET'}")
        lines += ["    _unknown = None",
                  "    _count, pos = read_unsigned_varint(buf, pos)",
                  "    for _ in range(_count):",
                  "        _tag, _end, pos = read_tag_header(buf, pos)"]
        for i, f in enumerate(tagged):
            lines.append(f"        {'if' if i == 0 else 'elif'} _tag == {f.tag}:")
            lines += self.decode_value(f, v, f.attr, "            ", True)
        lines += ["        else:",
                  "            _unknown = add_unknown_tag(_unknown, _tag, buf, pos, _end)",
                  "            pos = _end",
                  "        check_tag_end(_tag, pos, _end)"]
        return lines

    # classes
    def class_source(self, sname, ind):
        spec = self.spec
        fields = spec.structs[sname]
        is_message = sname == spec.name
        lines = [f"{ind}class {sname}({'Message' if is_message else 'Struct'}):"]
        b = ind + "    "
        if is_message:
            if spec.api_key is not None:
                lines.append(f"{b}API_KEY = {spec.api_key}")
            lines.append(f"{b}VALID_VERSIONS = ({spec.lo}, {spec.hi})")
            flex = spec.flexible.lo if spec.flexible.lo <= spec.flexible.hi else None
            lines.append(f"{b}FLEXIBLE_MIN = {flex}")
            if spec.deprecated is not None:
                lines.append(f"{b}DEPRECATED_VERSIONS = ({spec.deprecated.lo}, "
                             f"{min(spec.deprecated.hi, spec.hi)})")
            if spec.unstable:
                lines.append(f"{b}LATEST_VERSION_UNSTABLE = True")
        names = [f.attr for f in fields]
        if len(set(names)) != len(names):
            raise ValueError(f"{spec.name}.{sname}: two fields with one attribute name")
        slots = ", ".join(repr(n) for n in names) + ("," if len(names) == 1 else "")
        lines.append(f"{b}__slots__ = ({slots})")
        if fields:
            lines.append(f"{b}FIELDS = (")
            for f in fields:
                lines.append(f"{b}    {self.field_source(f)},")
            lines.append(f"{b})")
        params, body = [], []
        for f in fields:
            d = default_value(f, spec)
            if d is None:
                params.append(f"{f.attr}=UNSET")
                fresh = "[]" if f.is_array else f"{self.cls_ref(f.struct)}()"
                body.append(f"{b}    self.{f.attr} = {fresh} if {f.attr} is UNSET else {f.attr}")
            else:
                params.append(f"{f.attr}={d}")
                body.append(f"{b}    self.{f.attr} = {f.attr}")
        params.append("_unknown_tagged_fields=None")
        body.append(f"{b}    self._unknown_tagged_fields = _unknown_tagged_fields")
        lines.append("")
        lines.append(f"{b}def __init__(self, {', '.join(params)}):")
        lines += body
        return lines

    def field_source(self, f):
        d = default_value(f, self.spec)
        if d is None:
            d = "()" if f.is_array else "..."
        parts = [repr(f.attr), repr(f.type), repr(f.versions.spec), d]
        if f.nullable is not None:
            parts.append(f"nullable_versions={f.nullable.spec!r}")
        if f.tag is not None:
            parts.append(f"tag={f.tag}, tagged_versions={f.tagged.spec!r}")
        if f.flexible is not None:
            parts.append(f"flexible_versions={f.flexible.spec!r}")
        return f"Field({', '.join(parts)})"

    def generate(self):
        spec = self.spec
        encoders = [self.encoder(spec.name, v) for v in range(spec.lo, spec.hi + 1)]
        decoders = [self.decoder(spec.name, v) for v in range(spec.lo, spec.hi + 1)]
        title = f"{spec.name} ({spec.kind}" + (
            f", api key {spec.api_key})" if spec.api_key is not None else ")")
        parts = [f"# --- {title} " + "-" * max(3, 76 - len(title)), ""]
        cls = self.class_source(spec.name, "")
        for sname in spec.struct_order:
            cls.append("")
            cls += self.class_source(sname, "    ")
        parts.append("\n".join(cls))
        parts.append("")
        for sname in sorted(self.tagged_defaults, key=spec.struct_order.index):
            parts.append(f"{self.cls_ref(sname)}._DEFAULT = {self.cls_ref(sname)}()")
        if self.tagged_defaults:
            parts.append("")
        parts.append("")
        for fn in self.funcs:
            parts.append(fn)
            parts.append("")
        parts.append(f"{spec.name}._ENCODERS = ({', '.join(encoders)},)")
        parts.append(f"{spec.name}._DECODERS = ({', '.join(decoders)},)")
        return "\n".join(parts)


GENERATED_BY = f"""\
# DO NOT EDIT: generated by `{COMMAND}`
# from Kafka's JSON message schemas ({{source}}, Apache License 2.0).
"""

MESSAGES_DOC = '''\
"""Kafka protocol messages: one class per schema, one nested class per struct.

Attributes are the schema's field names in snake_case; FIELDS describes them
with Kafka's version strings. `Cls.encode(obj, version)` / `Cls.decode(buf,
version)` (see schema.Message) dispatch through _ENCODERS/_DECODERS to the
functions below: one per distinct wire layout, named after the first version
that uses it (`_e_FetchResponse_v7` serves every version whose layout it has).
"""
'''

HEADER = GENERATED_BY + MESSAGES_DOC

PACKAGE_DOC = '''\
"""Kafka protocol messages: one class per schema, one nested class per struct.

Attributes are the schema's field names in snake_case; FIELDS describes them
with Kafka's version strings. `Cls.encode(obj, version)` / `Cls.decode(buf,
version)` (see schema.Message) dispatch through _ENCODERS/_DECODERS to
functions generated beside the classes: one per distinct wire layout, named
after the first version that uses it (`_e_FetchResponse_v7` serves every
version whose layout it has).

Each API's request and response live in a submodule of their own (fetch.py
holds FetchRequest and FetchResponse; headers.py the two headers; each data
schema its own), imported on first use: `from pylog.protocol.messages import
FetchRequest`, `messages.FetchRequest` and REQUESTS[1] import fetch.py alone.
A process pays for the APIs it uses, not for all of Kafka's (a broker's
start-up touches a few of them). Import the classes from this package, not
from the submodules, whose split may change. Any thread may look a class up:
the import system runs a submodule once and makes a racing first lookup wait
for it (tests/protocol/test_lazy_messages.py).
"""
'''

SCHEMA_NAMES = ("UNSET", "ZERO_UUID", "Field", "Message", "Struct")


def _imports(body, package="."):
    """Import lines for exactly the helpers the generated body uses;
    `package` is the relative name of pylog.protocol as seen from the module."""
    def used(name):
        return re.search(rf"\b{name}\b", body) is not None

    lines = ["from struct import Struct as _Struct"]
    if used("UUID"):
        lines.append("from uuid import UUID")
    lines.append("")
    lines.append(f"from {package}schema import {', '.join(n for n in SCHEMA_NAMES if used(n))}")
    helpers = sorted(n for n in types.__all__ if n.islower() and used(n))
    lines.append(f"from {package}types import (")
    lines += [f"    {h}," for h in helpers]
    lines.append(")")
    return "\n".join(lines) + "\n"


def _source_label(schemas_dir):
    return "/".join(Path(schemas_dir).resolve().parts[-3:])


def _module_parts(specs, header, package):
    """Header, imports, struct formats and class sections of one module."""
    formats = {}
    sections = [MessageGen(spec, formats).generate() for spec in specs]
    body = "\n\n".join(sections)
    out = [header, _imports(body, package)]
    for fmt in sorted(formats, key=lambda f: (len(f), f)):
        out.append(f"{formats[fmt]} = _Struct({fmt!r})")
    out.append("\n")
    out.append(body)
    out.append("\n")
    return out


def _finish(out):
    return re.sub(r"\n{4,}", "\n\n\n", "\n".join(out))


def _all_list(names):
    return "__all__ = [\n" + "".join(f"    {n!r},\n" for n in names) + "]\n"


def _exported(specs):
    """Top-level names in the order of __all__: headers, API messages, data."""
    return ([s.name for s in specs if s.kind == "header"]
            + [s.name for s in specs if s.kind in ("request", "response")]
            + [s.name for s in specs if s.kind == "data"])


def _select(specs, only, schemas_dir):
    if not only:
        return specs
    missing = set(only) - {s.name for s in specs}
    if missing:
        raise SystemExit(f"no schema named {', '.join(sorted(missing))} in {schemas_dir}")
    return [s for s in specs if s.name in only]


def generate(schemas_dir, only=None):
    """One module holding every selected schema (group_records.py)."""
    specs = _select(load_specs(schemas_dir), only, schemas_dir)
    out = _module_parts(specs, HEADER.replace("{source}", _source_label(schemas_dir)), ".")

    def table(kind):
        rows = [f"    {s.api_key}: {s.name}," for s in specs if s.kind == kind]
        return "\n".join(rows)

    out.append(f"REQUESTS = {{\n{table('request')}\n}}\n")
    out.append(f"RESPONSES = {{\n{table('response')}\n}}\n")
    data = [s.name for s in specs if s.kind == "data"]
    out.append("# Schemas without an api key, such as ConsumerProtocolSubscription.")
    out.append("DATA = {\n" + "".join(f"    {n!r}: {n},\n" for n in data) + "}\n")
    out.append(_all_list(["REQUESTS", "RESPONSES", "DATA"] + _exported(specs)))
    return _finish(out)


def module_name(spec):
    """The submodule of the messages package that defines `spec`: one per api
    key (request and response together, as every user of one needs the
    other), one for the headers, one per data schema."""
    if spec.kind == "header":
        return "headers"
    if spec.kind in ("request", "response"):
        return snake_case(re.sub(r"(Request|Response)$", "", spec.name))
    return snake_case(spec.name)


def generate_package(schemas_dir, only=None):
    """The messages package: {file name: text}, an __init__.py that imports
    each submodule on the first use of one of its classes, and the submodules."""
    specs = _select(load_specs(schemas_dir), only, schemas_dir)
    source = _source_label(schemas_dir)
    modules = {}
    for spec in specs:
        modules.setdefault(module_name(spec), []).append(spec)
    files = {}
    for name, group in modules.items():
        what = " and ".join(s.name for s in group)
        if group[0].api_key is not None:
            what += f" (api key {group[0].api_key})"
        doc = (f'"""{what}.\n\nImport them from pylog.protocol.messages, which imports this '
               'module\non their first use.\n"""\n')
        out = _module_parts(group, GENERATED_BY.replace("{source}", source) + doc, "..")
        out.append(_all_list([s.name for s in group]))
        files[f"{name}.py"] = _finish(out)
    files["__init__.py"] = _package_init(specs, source)
    return files


def _package_init(specs, source):
    def table(kind, key):
        return "".join(f"    {key(s)!r}: {s.name!r},\n" for s in specs if s.kind == kind)

    where = "".join(f"    {s.name!r}: {module_name(s)!r},\n" for s in specs)
    out = [GENERATED_BY.replace("{source}", source) + PACKAGE_DOC,
           "import sys as _sys",
           "",
           "from ..schema import ClassTable as _ClassTable",
           "",
           "# Class name -> the submodule that defines it.",
           "_MODULE_OF = {\n" + where + "}",
           "",
           "",
           "def __getattr__(name):",
           "    # Called only for names not yet in globals(): the first use of a class",
           "    # imports its submodule and keeps the class here for later lookups.",
           "    module = _MODULE_OF.get(name)",
           "    if module is None:",
           "        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')",
           "    # __import__ rather than importlib: -X importtime then shows what each costs.",
           "    qualified = f'{__name__}.{module}'",
           "    __import__(qualified)",
           "    cls = globals()[name] = getattr(_sys.modules[qualified], name)",
           "    return cls",
           "",
           "",
           "def __dir__():",
           "    return sorted(set(globals()) | set(_MODULE_OF))",
           "",
           "",
           "REQUESTS = _ClassTable(__getattr__, {\n" + table("request", lambda s: s.api_key) + "})",
           "RESPONSES = _ClassTable(__getattr__, {\n" + table("response", lambda s: s.api_key) + "})",
           "# Schemas without an api key, such as ConsumerProtocolSubscription.",
           "DATA = _ClassTable(__getattr__, {\n" + table("data", lambda s: s.name) + "})",
           "",
           _all_list(["REQUESTS", "RESPONSES", "DATA"] + _exported(specs))]
    return _finish(out)


def write_package(files, out_dir):
    """Writes the package and removes generated submodules it no longer has
    (a schema renamed or dropped), leaving any other file alone."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.py"):
        if old.name not in files and old.read_text(encoding="utf-8").startswith("# DO NOT EDIT"):
            old.unlink()
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


def main(argv=None):
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("--schemas", type=Path, default=DEFAULT_SCHEMAS,
                   help="folder of Kafka message JSON files (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="a package folder (one submodule per API), or a FILE.py for one "
                        "module holding every schema (default: %(default)s)")
    p.add_argument("--only", help="comma-separated schema names to generate (default: all)")
    args = p.parse_args(argv)
    only = args.only.split(",") if args.only else None
    if args.out.suffix == ".py":
        text = generate(args.schemas, only)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out} ({len(text)} bytes, {text.count(chr(10))} lines)", file=sys.stderr)
    else:
        files = generate_package(args.schemas, only)
        write_package(files, args.out)
        size = sum(len(t) for t in files.values())
        print(f"wrote {args.out}/ ({len(files)} modules, {size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
