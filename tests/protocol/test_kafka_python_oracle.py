"""Cross-check against an independent codec: kafka-python 3's JSON-driven one.

For every request and response version both sides know, our encoding of a
fully filled object must decode in kafka-python and re-encode to the same
bytes. Skipped when kafka-python 3 (a dev dependency) is not installed.
"""

import importlib
import pkgutil
import warnings

import pytest

from pylog.protocol import messages as m

from .test_messages import Filler


def kafka_python_classes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            api_message = importlib.import_module("kafka.protocol.api_message")
            for group in ("admin", "consumer", "metadata", "producer"):
                pkg = importlib.import_module(f"kafka.protocol.{group}")
                for info in pkgutil.iter_modules(pkg.__path__):
                    importlib.import_module(f"kafka.protocol.{group}.{info.name}")
        except ImportError:
            return {}
    found, todo = {}, [api_message.ApiMessage]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if getattr(cls, "_class_version", 0) is None and getattr(cls, "_json", None):
            found[(cls.type, cls.API_KEY)] = cls
    return found


KAFKA_PYTHON = kafka_python_classes()


def cases():
    for (kind, api_key), theirs in sorted(KAFKA_PYTHON.items()):
        ours = (m.REQUESTS if kind == "request" else m.RESPONSES).get(api_key)
        if ours is None:
            continue
        lo, hi = theirs._valid_versions
        for v in range(max(lo, ours.VALID_VERSIONS[0]), min(hi, ours.VALID_VERSIONS[1]) + 1):
            yield pytest.param(ours, theirs, v, id=f"{ours.__name__}-v{v}")


@pytest.mark.skipif(not KAFKA_PYTHON, reason="kafka-python 3 not installed")
@pytest.mark.parametrize("ours, theirs, version", list(cases()) or [pytest.param(None, None, 0)])
def test_same_bytes_as_kafka_python(ours, theirs, version):
    obj = Filler(ours, version).build(ours)
    if ours is m.ApiVersionsResponse:
        obj.error_code = 0  # kafka-python reads any error reply as v0 (KIP-511)
    data = ours.encode(obj, version)
    decoded = theirs.decode(data, version=version, header=False)
    decoded._header = None  # decode() skips __init__; encode() expects these
    decoded._min_version = decoded._max_version = None
    assert bytes(decoded.encode(version=version)) == data
