"""`python -m pylog.protocol.gen_errors`: Kafka's error table -> error_codes.py.

Two steps, so the generated module can be checked without a Kafka checkout:

  extract   reads Kafka's Errors.java and the exception classes it names from a
            source tree (clients/src/main/java of apache/kafka or
            confluentinc/kafka) and writes the facts, one error a row, to
            kafka_errors.json: code, name, retriable, message. retriable is
            whether the exception class extends RetriableException, found by
            walking each class's `extends` chain through the sources.
  generate  (the default) writes error_codes.py from kafka_errors.json.

    git --git-dir=<kafka>.git archive HEAD clients/src/main/java | tar -x -C /tmp/k
    python -m pylog.protocol.gen_errors extract /tmp/k/clients/src/main/java "<repo>@<commit>"
    python -m pylog.protocol.gen_errors

tests/test_error_table.py checks error_codes.py is what `generate` writes.
"""
from __future__ import annotations

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "kafka_errors.json")
OUT = os.path.join(HERE, "error_codes.py")

_ERRORS_JAVA = "org/apache/kafka/common/protocol/Errors.java"
_RETRIABLE = "org.apache.kafka.common.errors.RetriableException"

# NAME(code, message, Constructor::new) where message is null or "..." + "..."
_ENTRY = re.compile(
    r"^\s{4}([A-Z][A-Z0-9_]*)\(\s*(-?\d+)\s*,\s*(null|(?:\"(?:[^\"\\]|\\.)*\"\s*\+?\s*)+)\s*,\s*"
    r"(?:([A-Za-z0-9_.]+)::new|message\s*->\s*null)\s*\)\s*[,;]",
    re.M | re.S)
_STRING = re.compile(r"\"((?:[^\"\\]|\\.)*)\"")
_ESCAPES = {"n": "\n", "t": "\t", "\"": "\"", "'": "'", "\\": "\\"}


def _java_string(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)


def _strip_comments(src: str) -> str:
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    return re.sub(r"//[^\n]*", " ", src)


class _Sources:
    """Resolves a class name as Java would (explicit import, then the same
    package) and reads what it extends."""

    def __init__(self, root: str):
        self.root = root

    def _path(self, fqcn: str) -> str:
        return os.path.join(self.root, *fqcn.split(".")) + ".java"

    def resolve(self, simple: str, package: str, imports: dict[str, str]) -> str | None:
        if "." in simple:
            return simple
        if simple in imports:
            return imports[simple]
        same = f"{package}.{simple}"
        return same if os.path.exists(self._path(same)) else None

    def parent(self, fqcn: str) -> str | None:
        path = self._path(fqcn)
        if not os.path.exists(path):
            return None  # outside the tree (java.lang.RuntimeException and the like)
        with open(path, encoding="utf-8") as f:
            src = _strip_comments(f.read())
        package = re.search(r"^\s*package\s+([\w.]+)\s*;", src, re.M).group(1)
        imports = {m.group(1).rsplit(".", 1)[1]: m.group(1)
                   for m in re.finditer(r"^\s*import\s+([\w.]+)\s*;", src, re.M)}
        simple = fqcn.rsplit(".", 1)[1]
        m = re.search(rf"\bclass\s+{simple}\b(?:\s*<[^{{]*?>)?\s+extends\s+([\w.]+)", src)
        return self.resolve(m.group(1), package, imports) if m else None

    def is_retriable(self, fqcn: str) -> bool:
        seen = set()
        while fqcn and fqcn not in seen:
            if fqcn == _RETRIABLE:
                return True
            seen.add(fqcn)
            fqcn = self.parent(fqcn)
        return False


def extract(root: str) -> list[dict]:
    """The error rows of the Errors.java under root, in code order."""
    src_path = os.path.join(root, _ERRORS_JAVA)
    with open(src_path, encoding="utf-8") as f:
        src = _strip_comments(f.read())
    imports = {m.group(1).rsplit(".", 1)[1]: m.group(1)
               for m in re.finditer(r"^\s*import\s+([\w.]+)\s*;", src, re.M)}
    enum_body = src[src.index("public enum Errors"):]
    enum_body = enum_body[:enum_body.index(";\n") + 2]
    sources = _Sources(root)
    rows = []
    for m in _ENTRY.finditer(enum_body):
        name, code, message, ctor = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        text = None if message == "null" else "".join(_java_string(s) for s in _STRING.findall(message))
        retriable = False
        if ctor is not None:
            fqcn = sources.resolve(ctor, "org.apache.kafka.common.protocol", imports)
            if fqcn is None:
                raise SystemExit(f"{name}: cannot find the class {ctor}")
            retriable = sources.is_retriable(fqcn)
        rows.append({"code": code, "name": name, "retriable": retriable, "message": text})
    declared = len(re.findall(r"^\s{4}[A-Z][A-Z0-9_]*\(\s*-?\d+\s*,", enum_body, re.M))
    if declared != len(rows):
        raise SystemExit(f"parsed {len(rows)} of {declared} entries of {src_path}")
    rows.sort(key=lambda r: r["code"])
    return rows


def write_data(rows: list[dict], source: str, path: str = DATA) -> None:
    """One error a line, under the name of the tree they came from."""
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"source": %s,\n "errors": [\n' % json.dumps(source))
        f.write(",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in rows))
        f.write("\n]}\n")


def load_data(path: str = DATA) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)["errors"]


# The generated module's lines before the entries (kept as lines, not as a
# block of text, so the template does not read as a copy of its output).
_HEADER = (
    '"""GENERATED by `python -m pylog.protocol.gen_errors` from kafka_errors.json',
    "(Kafka's Errors.java): do not edit by hand.",
    "",
    "The one table of Kafka error codes: `Errors.UNKNOWN_TOPIC_OR_PARTITION` is an",
    "int (the wire code) with .code, .name, .retriable and .message; `Errors(code)`",
    'and `Errors.for_code(code)` look codes up (error_code.py).',
    '"""',
    "from __future__ import annotations",
    "",
    "from .error_code import ErrorCode, ErrorTable",
    "",
    '__all__ = ["ErrorCode", "Errors"]',
    "",
    "",
    "class Errors(ErrorTable):",
)


def render(rows: list[dict]) -> str:
    lines = [*_HEADER]
    for r in rows:
        lines.append(f"    {r['name']} = ErrorCode({r['code']}, {r['name']!r}, {r['retriable']!r}, "
                     f"{r['message']!r})")
    return "\n".join(lines) + "\n"


def generate(data: str = DATA, out: str = OUT) -> None:
    text = render(load_data(data))
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv: list[str]) -> int:
    if argv[:1] == ["extract"]:
        if len(argv) not in (2, 3):
            print(__doc__, file=sys.stderr)
            return 2
        rows = extract(argv[1])
        write_data(rows, argv[2] if len(argv) == 3 else os.path.abspath(argv[1]))
        print(f"{len(rows)} errors -> {DATA}")
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    generate()
    print(f"-> {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
