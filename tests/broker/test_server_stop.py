"""A broker stopping while clients keep connecting (librdkafka reconnects at
once to a broker going away): every connection its listener accepted is
closed before its event loop closes, none left for the garbage collector to
report unclosed (pyproject's warnings-as-errors makes that report an error in
whatever test runs then)."""
import gc
import socket
import sys
import threading
import time

import pytest

from pylog.testing import running_broker

ROUNDS = 3


# uvloop, the broker's default loop: there every stop left connections made
# after it began before the fix. (The stdlib loop has shown an unclosed
# transport under heavy load that this test does not pin down yet:
# docs/SHARE-SOCKFLAKE-STATUS.md.)
def test_connections_accepted_while_a_broker_stops_are_closed_with_it(tmp_path):
    pytest.importorskip("uvloop")
    loop = "uvloop"
    unclosed = []
    previous, sys.unraisablehook = sys.unraisablehook, unclosed.append
    try:
        for i in range(ROUNDS):
            with running_broker(tmp_path / f"d{i}", config={"pylog.event.loop": loop}) as b:
                host, port = str(b).rsplit(":", 1)
                done, socks = threading.Event(), []

                def connect():
                    while not done.is_set():
                        try:
                            socks.append(socket.create_connection((host, int(port)), timeout=5))
                        except OSError:
                            time.sleep(0.001)
                threads = [threading.Thread(target=connect) for _ in range(3)]
                for t in threads:
                    t.start()
                try:
                    # Connections accepted and being accepted when the stop begins.
                    while len(socks) < 200:
                        time.sleep(0.01)
                    b.broker.stop_in_thread()
                finally:
                    done.set()
                    for t in threads:
                        t.join()
                    for s in socks:
                        s.close()
            gc.collect()
    finally:
        sys.unraisablehook = previous
    assert not unclosed, [f"{u.exc_value!r} ({u.object!r})" for u in unclosed][:5]
