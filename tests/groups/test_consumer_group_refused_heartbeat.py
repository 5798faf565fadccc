"""A ConsumerGroupHeartbeat the coordinator refuses (here UNKNOWN_MEMBER_ID:
a member fenced by its session heartbeats again with its old epoch, as
librdkafka's 0113 does in every run) changes nothing and writes nothing. It
must not be logged as a failed write: pylog logged "write failed, group
state reverted" for each such refusal, and one of those lines was taken for
a failed __consumer_offsets write in an analysis of the librdkafka suite
(docs/LIBRDKAFKA-SUITE.md, 0033)."""
from __future__ import annotations

import logging

from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker

from .helpers import create_topic
from .kip848 import CONFIG, connect, describe, heartbeat, member_id


def test_a_refused_heartbeat_is_not_logged_as_a_failed_write(tmp_path, caplog):
    with running_broker(tmp_path / "data", config=CONFIG) as b:
        create_topic(b, "rf", 2)
        with connect(b) as conn:
            _check(conn, caplog)


def _check(conn, caplog):
    a = member_id()
    r = heartbeat(conn, "rf-g", a, 0, ["rf"])
    assert r.error_code == 0, r
    before = describe(conn, "rf-g")
    with caplog.at_level(logging.DEBUG, logger="pylog.groups"):
        refused = heartbeat(conn, "rf-g", member_id(), r.member_epoch + 2)
        assert refused.error_code == Errors.UNKNOWN_MEMBER_ID
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "pylog.groups"]
    assert not [ln for ln in lines if "write failed" in ln], lines
    assert [ln for ln in lines if "refused: error %d" % Errors.UNKNOWN_MEMBER_ID in ln], lines
    after = describe(conn, "rf-g")
    assert [x.member_id for x in after.members] == [a]
    assert after.group_epoch == before.group_epoch
