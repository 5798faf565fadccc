"""Bench L's client processes: one paced producer, one consumer (run as scripts).

    python bench/_latency_clients.py produce '{"kind": "kafka", ...}'
    python bench/_latency_clients.py consume '{"kind": "kafka", ...}'

Each runs in its own process so that neither the producer's pacing nor the
consumer's decoding waits on the other's GIL (the machine has 2 cores; the broker
shares them). Both print one JSON line with their results on stdout; the consumer
first prints "ready" once it is reading, and then waits for a line "end" on stdin
(the driver sends it after the producer flushed) before it gives the stragglers
`grace_s` more seconds.

Payload: seq (u64) and the intended send time (u64, CLOCK_MONOTONIC ns, which is one
clock for every process on the machine), then filler up to `size` bytes. Message i
is due at t0 + i / rate: the producer sends every message that is due whenever it
wakes and stamps each with its *intended* time, not the moment it got round to it,
so a stall anywhere (producer, client library, broker) shows up as latency of every
message that should have been sent meanwhile (no coordinated omission). How far the
producer itself fell behind the schedule is reported separately (send lag).

Latency = the consumer's clock when consume()/XREAD returned the message minus the
intended send time. Messages with seq < warmup_n are the warm-up and are not counted.
"""
from __future__ import annotations

import json
import os
import resource
import select
import socket
import struct
import sys
import time

HDR = struct.Struct("<QQ")
mono = time.monotonic_ns


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ----------------------------------------------------------------------------- producers
class KafkaSender:
    """confluent-kafka Producer, acks=all, one partition; errors counted in a callback
    that librdkafka calls only for failed messages (delivery.report.only.error)."""

    def __init__(self, a):
        from confluent_kafka import Producer

        self.errors = 0
        self.first_error = None
        conf = {
            "bootstrap.servers": a["bootstrap"], "acks": "all", "linger.ms": a["linger_ms"],
            "batch.size": 1048576, "queue.buffering.max.messages": 10_000_000,
            "queue.buffering.max.kbytes": 2097151, "delivery.report.only.error": True,
            "on_delivery": self._failed, "message.timeout.ms": 60000,
        }
        self.p = Producer(conf)
        self.p.list_topics(a["topic"], timeout=20)  # connected before the first message
        self.topic = a["topic"]

    def _failed(self, err, msg):
        if err is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = str(err)

    def send(self, payloads):
        produce, topic = self.p.produce, self.topic
        for v in payloads:
            while True:
                try:
                    produce(topic, v, partition=0)
                    break
                except BufferError:  # librdkafka's queue is full: the broker is behind
                    self.p.poll(0.001)
        self.p.poll(0)

    def finish(self, timeout):
        left = self.p.flush(timeout)
        return {"undelivered": left, "errors": self.errors, "first_error": self.first_error}


def _resp(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class RedisSender:
    """XADD over one raw RESP connection: each wake-up's due messages go out in one
    write (pipelined, as librdkafka batches), a thread reads the replies (the "acks")
    with hiredis' C parser so that the socket never blocks the schedule."""

    def __init__(self, a):
        import threading

        import hiredis

        # XADD key * d <payload>: the first four of the five parts never change.
        self.head = b"*5\r\n" + _resp(b"XADD", a["topic"].encode(), b"*", b"d")[len(b"*4\r\n"):]
        self.sock = socket.create_connection((a["host"], a["port"]))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()
        self.replies = 0
        self.errors = 0
        self.first_error = None
        self._eof = False
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        r, recv, gets = self.reader, self.sock.recv, self.reader.gets
        while True:
            try:
                data = recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                self._eof = True
                return
            r.feed(data)
            while (x := gets()) is not False:
                self.replies += 1
                if isinstance(x, Exception):
                    self.errors += 1
                    if self.first_error is None:
                        self.first_error = str(x)

    def send(self, payloads):
        head = self.head
        self.sock.sendall(b"".join(b"%s$%d\r\n%s\r\n" % (head, len(v), v) for v in payloads))

    def finish(self, timeout, sent=0):
        deadline = time.monotonic() + timeout
        while self.replies < sent and time.monotonic() < deadline and not self._eof:
            time.sleep(0.01)
        self.sock.close()
        return {"undelivered": max(0, sent - self.replies), "errors": self.errors, "first_error": self.first_error}


def produce(a) -> dict:
    rate, size, total = a["rate"], a["size"], a["total"]
    warmup_n = a["warmup_n"]
    pad = b"x" * (size - HDR.size)
    sender = KafkaSender(a) if a["kind"] == "kafka" else RedisSender(a)
    pack = HDR.pack
    interval = 1e9 / rate
    cpu0 = _cpu()
    t0 = mono() + 20_000_000
    i = 0
    lags = []            # lag of the first message of each wake-up (the most behind one)
    t_first = t_last = None
    sleep = time.sleep
    while i < total:
        now = mono()
        due = min(total, int((now - t0) / interval) + 1) if now >= t0 else 0
        if due <= i:
            sleep((t0 + i * interval - now) / 1e9)
            continue
        first = t0 + int(i * interval)
        if i <= warmup_n < due:
            t_first = now
        if i >= warmup_n:
            lags.append(now - first)
        sender.send([pack(j, t0 + int(j * interval)) + pad for j in range(i, due)])
        i = due
    t_last = mono()
    cpu1 = _cpu()
    if a["kind"] == "kafka":
        fin = sender.finish(60)
    else:
        fin = sender.finish(60, total)
    measured = total - warmup_n
    span = (t_last - t_first) / 1e9 if t_first else None
    lags.sort()
    return dict(
        sent=total, measured=measured, achieved_rate=measured / span if span else None,
        send_lag_p99_ms=lags[int(0.99 * (len(lags) - 1))] / 1e6 if lags else None,
        send_lag_max_ms=lags[-1] / 1e6 if lags else None, wakeups=len(lags),
        cpu_s=cpu1 - cpu0, **fin)


# ----------------------------------------------------------------------------- consumers
class KafkaReceiver:
    def __init__(self, a):
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.c = Consumer({
            "bootstrap.servers": a["bootstrap"], "group.id": f"bench-l-{os.getpid()}",
            "enable.auto.commit": False, "enable.partition.eof": False,
            # librdkafka 2.x backs off a whole second when its local queue passes its
            # thresholds; that is the client's pause, not the broker's latency.
            "fetch.queue.backoff.ms": 1,
            **({"fetch.wait.max.ms": a["fetch_wait_ms"]} if a.get("fetch_wait_ms") else {}),
        })
        self.c.assign([TopicPartition(a["topic"], 0, OFFSET_BEGINNING)])
        self.errors = 0

    def poll(self, timeout):
        # consume(n, timeout) waits until n messages *or* the timeout: it would hold
        # the first arrivals back. Block for one message, then take what is there.
        first = self.c.poll(timeout)
        if first is None:
            return mono(), []
        msgs = self.c.consume(num_messages=10000, timeout=0)
        now = mono()
        out = []
        for m in [first, *msgs]:
            if m.error():
                self.errors += 1
                continue
            out.append(m.value())
        return now, out

    def close(self):
        self.c.close()


class RedisReceiver:
    """XREAD BLOCK over one raw connection parsed by hiredis' C reader (redis-py's
    per-entry dict building would make the harness, not Redis, the slow part)."""

    def __init__(self, a):
        import hiredis

        self.sock = socket.create_connection((a["host"], a["port"]))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()
        self.key = a["topic"].encode()
        self.last = b"0-0"
        self.errors = 0

    def poll(self, timeout):
        self.sock.sendall(_resp(b"XREAD", b"COUNT", b"10000", b"BLOCK", b"%d" % max(1, int(timeout * 1000)),
                                b"STREAMS", self.key, self.last))
        gets = self.reader.gets
        while (res := gets()) is False:
            data = self.sock.recv(1 << 22)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.reader.feed(data)
        now = mono()
        if isinstance(res, Exception):
            self.errors += 1
            return now, []
        out = []
        for _key, entries in res or ():
            if entries:
                self.last = entries[-1][0]
            for _id, fields in entries:
                out.append(fields[1])
        return now, out

    def close(self):
        self.sock.close()


def consume(a) -> dict:
    import numpy as np

    total, warmup_n = a["total"], a["warmup_n"]
    rcv = KafkaReceiver(a) if a["kind"] == "kafka" else RedisReceiver(a)
    arrival = np.full(total, -1, dtype=np.int64)
    intended = np.zeros(total, dtype=np.int64)
    got = dupes = bad = 0
    unpack = HDR.unpack_from
    rcv.poll(0.5)  # joined and fetching before the producer starts
    print("ready", flush=True)
    cpu0 = _cpu()
    end_at = None
    while got < total:
        if end_at is None and select.select([sys.stdin], [], [], 0)[0]:
            sys.stdin.readline()
            end_at = time.monotonic() + a["grace_s"]
        if end_at is not None and time.monotonic() > end_at:
            break
        now, values = rcv.poll(0.05)
        for v in values:
            seq, t = unpack(v)
            if seq >= total or len(v) != a["size"]:
                bad += 1
            elif arrival[seq] >= 0:
                dupes += 1
            else:
                arrival[seq] = now
                intended[seq] = t
                got += 1
    cpu1 = _cpu()
    rcv.close()
    arr, itd = arrival[warmup_n:], intended[warmup_n:]
    ok = arr >= 0
    lat = (arr[ok] - itd[ok]) / 1e6
    res = dict(received=int(ok.sum()), lost=int((~ok).sum()), duplicates=dupes, malformed=bad,
               consumer_errors=rcv.errors, cpu_s=cpu1 - cpu0)
    if lat.size:
        p = np.quantile(lat, [0.5, 0.99, 0.999], method="higher")
        res.update(p50_ms=float(p[0]), p99_ms=float(p[1]), p999_ms=float(p[2]), max_ms=float(lat.max()),
                   mean_ms=float(lat.mean()))
        # The worst one-second windows of the schedule: when the tail happened.
        sec = ((itd[ok] - itd[ok].min()) // 1_000_000_000).astype(np.int64)
        worst = np.zeros(int(sec.max()) + 1)
        np.maximum.at(worst, sec, lat)
        res["max_ms_per_second"] = [round(float(x), 2) for x in worst]
    return res


def main(argv):
    role, args = argv[1], json.loads(argv[2])
    res = produce(args) if role == "produce" else consume(args)
    print(json.dumps(res), flush=True)
    # librdkafka's threads can keep a process alive after close(); the result is out.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
