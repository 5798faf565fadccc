"""The one error table (pylog.protocol.error_codes): generated from Kafka's
Errors.java, used by the exception tree and the clients, and no error number
written anywhere else in pylog/."""
import fnmatch
import pathlib
import pickle
import textwrap

import kafka.errors
import pytest

from pylog import errors
from pylog.client.errors import RETRIABLE, error_for, error_name
from pylog.protocol import gen_errors
from pylog.protocol.error_codes import Errors

from error_number_scan import scan_source

ROOT = pathlib.Path(__file__).resolve().parent.parent


# ---- the generated module ----

def test_error_codes_module_is_what_the_generator_writes_from_the_committed_data():
    written = (ROOT / "pylog" / "protocol" / "error_codes.py").read_text()
    assert written == gen_errors.render(gen_errors.load_data())


def test_the_table_has_every_code_once_in_order():
    rows = gen_errors.load_data()
    codes = [r["code"] for r in rows]
    assert codes == sorted(set(codes)) and codes[:2] == [-1, 0]
    assert len(Errors) == len(rows) and list(Errors) == [Errors(c) for c in codes]
    assert Errors(3) is Errors.UNKNOWN_TOPIC_OR_PARTITION == 3
    assert (Errors(3).name, Errors(3).code, Errors(3).retriable) == ("UNKNOWN_TOPIC_OR_PARTITION", 3, True)
    assert Errors.NONE.message is None and Errors.UNKNOWN_SERVER_ERROR.message.startswith("The server")
    assert Errors.for_code(9999) is None
    with pytest.raises(ValueError):
        Errors(9999)
    assert pickle.loads(pickle.dumps(Errors.NOT_COORDINATOR)) is Errors.NOT_COORDINATOR
    assert f"{Errors.NOT_COORDINATOR}" == "16"


def _java_tree(root: pathlib.Path, files: dict[str, str]) -> str:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return str(root)


def test_extract_reads_entries_messages_and_the_retriable_chain(tmp_path):
    """A small source tree shaped like Kafka's: a retriable class two levels
    below RetriableException, one in another package, a message split over
    lines with an escaped quote, and NONE with no class."""
    e = "org/apache/kafka/common/errors/"
    root = _java_tree(tmp_path, {
        "org/apache/kafka/common/protocol/Errors.java": """\
            package org.apache.kafka.common.protocol;
            import org.apache.kafka.common.InvalidRecordException;
            import org.apache.kafka.common.errors.NotLeaderOrFollowerException;
            import org.apache.kafka.common.errors.ApiException;
            public enum Errors {
                // a comment with NOT_AN_ENTRY(5, "x", X::new),
                NONE(0, null, message -> null),
                NOT_LEADER_OR_FOLLOWER(6, "Not the \\"leader\\". " +
                        "Try again.",
                        NotLeaderOrFollowerException::new),
                INVALID_RECORD(87, "Bad record.", InvalidRecordException::new);

                private static final int X = 1;
            }
            """,
        e + "ApiException.java": "package org.apache.kafka.common.errors;\n"
                                 "public class ApiException extends RuntimeException {}\n",
        e + "RetriableException.java": "package org.apache.kafka.common.errors;\n"
                                       "public abstract class RetriableException extends ApiException {}\n",
        e + "InvalidMetadataException.java": "package org.apache.kafka.common.errors;\n"
                                             "public abstract class InvalidMetadataException extends RetriableException {}\n",
        e + "NotLeaderOrFollowerException.java": "package org.apache.kafka.common.errors;\n"
                                                 "/** extends ApiException in the javadoc only */\n"
                                                 "public class NotLeaderOrFollowerException extends InvalidMetadataException {}\n",
        e + "InvalidConfigurationException.java": "package org.apache.kafka.common.errors;\n"
                                                  "public class InvalidConfigurationException extends ApiException {}\n",
        "org/apache/kafka/common/InvalidRecordException.java":
            "package org.apache.kafka.common;\n"
            "import org.apache.kafka.common.errors.InvalidConfigurationException;\n"
            "public class InvalidRecordException extends InvalidConfigurationException {}\n",
    })
    assert gen_errors.extract(root) == [
        {"code": 0, "name": "NONE", "retriable": False, "message": None},
        {"code": 6, "name": "NOT_LEADER_OR_FOLLOWER", "retriable": True,
         "message": 'Not the "leader". Try again.'},
        {"code": 87, "name": "INVALID_RECORD", "retriable": False, "message": "Bad record."},
    ]


def test_extract_refuses_an_entry_it_cannot_parse(tmp_path):
    root = _java_tree(tmp_path, {"org/apache/kafka/common/protocol/Errors.java": """\
        package org.apache.kafka.common.protocol;
        public enum Errors {
            NONE(0, null, message -> null),
            ODD(1, MESSAGES.get(1), Odd::new);
        }
        """})
    with pytest.raises(SystemExit, match="parsed 1 of 2"):
        gen_errors.extract(root)


# kafka-python keeps the names some codes had before Kafka renamed them.
_KAFKA_PYTHON_OLD_NAMES = {-1: "UNKNOWN", 0: "NO_ERROR", 6: "NOT_LEADER_FOR_PARTITION",
                           10: "MESSAGE_SIZE_TOO_LARGE", 17: "INVALID_TOPIC",
                           39: "INVALID_REPLICATION_ASSIGNMENT"}
# kafka-python does not retry a CRC failure; Java's CorruptRecordException is a RetriableException.
_KAFKA_PYTHON_RETRIABLE_DIFFERS = {2}


def test_the_table_agrees_with_kafka_python_an_independent_copy():
    theirs = {c.errno: c for c in vars(kafka.errors).values()
              if isinstance(c, type) and issubclass(c, kafka.errors.BrokerResponseError)
              and getattr(c, "errno", None) is not None}
    assert len(theirs) > 100
    for code, cls in theirs.items():
        ours = Errors(code)
        assert _KAFKA_PYTHON_OLD_NAMES.get(code, ours.name) == cls.message, code
        assert (ours.retriable != cls.retriable) == (code in _KAFKA_PYTHON_RETRIABLE_DIFFERS), code


# ---- the exception tree and the clients take the table's facts ----

def test_every_exception_class_takes_its_code_and_retriable_flag_from_the_table():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.PylogError)]
    with_code = [c for c in classes if "error_code" in c.__dict__]
    assert len(with_code) > 25
    for cls in with_code:
        entry = cls.error_code
        assert entry is Errors(entry) and cls.retriable == entry.retriable, cls
        assert errors.for_code(entry) is cls or issubclass(cls, errors.for_code(entry)), cls
    assert errors.DiskFullError.error_code is Errors.KAFKA_STORAGE_ERROR and errors.DiskFullError.retriable


def test_a_class_that_contradicts_the_table_is_refused():
    with pytest.raises(TypeError, match="retriable=True"):
        class _Wrong(errors.PylogError):
            error_code = Errors.NOT_COORDINATOR
            retriable = False
    with pytest.raises(ValueError):
        class _Unknown(errors.PylogError):
            error_code = 9999


def test_for_code_falls_back_to_a_class_named_from_the_table():
    cls = errors.for_code(Errors.UNKNOWN_MEMBER_ID)
    assert cls.__name__ == "UnknownMemberIdError" and issubclass(cls, errors.PylogError)
    assert (cls.error_code, cls.retriable) == (Errors.UNKNOWN_MEMBER_ID, False)
    assert errors.for_code(25) is cls  # built once
    assert errors.for_code(14).retriable and errors.for_code(14).__name__ == "CoordinatorLoadInProgressError"
    assert errors.for_code(3) is errors.UnknownTopicOrPartitionError
    assert errors.for_code(9999) is errors.PylogError and errors.for_code(0) is errors.PylogError
    assert errors.code_for(errors.for_code(82)("x")) == Errors.FENCED_INSTANCE_ID
    assert errors.code_for(None) == 0 and errors.code_for(ValueError()) == -1


def test_the_client_names_and_retries_codes_by_the_table():
    e = error_for(Errors.NOT_COORDINATOR, "group g")
    assert (e.error_code, e.retriable, str(e)) == (16, True, "NOT_COORDINATOR (16): group g")
    e = error_for(9999)
    assert (e.error_code, e.retriable, type(e)) == (9999, False, errors.PylogError)
    assert error_name(104) == "INCONSISTENT_CLUSTER_ID" and error_name(9999) == "UNKNOWN_CODE_9999"
    assert RETRIABLE == {e for e in Errors if e.retriable} and 56 in RETRIABLE and 27 not in RETRIABLE


# ---- no error number outside the table ----

ALLOWLIST: list[str] = []  # every module of pylog/ is scanned


def test_no_error_number_is_written_outside_the_table():
    found = []
    for path in sorted((ROOT / "pylog").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "pylog/protocol/error_codes.py" or any(fnmatch.fnmatch(rel, p) for p in ALLOWLIST):
            continue
        found += [f"{rel}:{line}: {what}" for line, what in scan_source(path.read_text(), rel)]
    assert found == []


@pytest.mark.parametrize("snippet", [
    "UNKNOWN_TOPIC_OR_PARTITION = 3",
    "_NOT_COORDINATOR = 16",
    "class C:\n    FENCED_LEADER_EPOCH = 74",
    "ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID = 22, 25",
    "NAMES = {3: 'UNKNOWN_TOPIC_OR_PARTITION', 5: 'LEADER_NOT_AVAILABLE'}",
    "R(error_code=3)",
    "R(error_code=-1)",
    "p.error_code = 6",
    "code = 3 if t is None else (t.error_code or 5)",
    "if code == 15: pass",
    "if 15 == resp.error_code: pass",
    "if getattr(e, 'error_code', None) == 3: pass",
    "if p['error_code'] == 3: pass",
    "if err in (3, 6): pass",
    "if code not in {14, 15}: pass",
    "x = {'error_code': 41}",
    "COORDINATOR_ERRORS = frozenset({14, 15, 16})",
    "raise error_for(7, 'timed out')",
    "check(35)",
    "def answer(error_code=42): pass",
    "def answer(*, code=42): pass",
])
def test_the_scanner_finds_error_numbers(snippet):
    assert scan_source(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "R(error_code=0)",
    "if code == 0: pass",
    "R(error_code=Errors.UNKNOWN_TOPIC_OR_PARTITION)",
    "if code in (Errors.NOT_COORDINATOR, Errors.COORDINATOR_NOT_AVAILABLE): pass",
    "api_code = 3",
    "exit_code = 1",
    "timeout = 15",
    "s = 'error_code=3'  # error_code=3",
    "NONE, GZIP = 0, 1  # not an error code",
    "x = {'error_code': code}",
])
def test_the_scanner_leaves_other_numbers_alone(snippet):
    assert scan_source(snippet) == [], snippet
