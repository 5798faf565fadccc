"""N. Log compaction: one cleaning round of a log of 10 M records over 1 M keys
(100-byte values), against a plain copy of the same files in the same run.

Once per session (untimed) a log is written with pylog: append_batch of 1000
records, keys b"key-%09d" drawn uniformly (seeded) from 1 M, 100-byte values,
segment_bytes 256 MiB, then rolled so every segment is cleanable. Each round
copies that pristine directory to a scratch one and drops the copy's dirty pages
with os.sync() (untimed), then times:

  cleaner : Log.open(copy).compact(): the offset map built over the whole log,
            every segment filtered into new ones (indexes built, fsync'd),
            swapped in (.cleaned -> .swap -> rename)
  copy    : shutil.copyfile of every file of the pristine log into another
            directory, then fsync of each copy (the same durability)

Figures: MB/s of log read and rewritten (the cleaner reads the log twice, for
the map and for the copy, plus what it writes; the copy reads once and writes
once), the log's own MB/s (its bytes over the time), and the map's bytes per
key: 16 per slot (a 64-bit key hash and a 64-bit offset; Kafka's
SkimpyOffsetMap spends 24), and the map's memory over the keys at
log.cleaner.io.buffer.load.factor 0.9 (the dedupe buffer is sized to hold the
keys: keys / 0.9 * 16 bytes).

Goals (issue 16): cleaner >= 500 MB/s read + rewritten on one core; map <= 16
bytes per key. Medians of the rounds.

The third figure (--produce): produce throughput of other partitions while the
broker's cleaner runs, against the same produce without it. Per round, two
`pylog broker` processes in turn, in alternating order (log.cleaner.enable
true and false), each given the same compacted topic "kv" of --produce-records
records over a tenth as many keys (segment.bytes 16 MiB,
min.cleanable.dirty.ratio=1 while it is written, so nothing is cleaned yet).
Then, timed: kv's ratio set to 0.01 (IncrementalAlterConfigs; the cleaner
starts a round within its 100 ms backoff) and confluent-kafka producing
100-byte records to a 3-partition delete-policy topic ("other", acks=1,
linger.ms=20) in steps of 20,000 for --window seconds. Figure: records/s with
the cleaner over records/s without, median of the rounds' ratios (goal >=
0.9x), with how much of the window the cleaning round covered (the round's
time from its log line). The machine's other load shows in both runs alike
only as far as it is steady: the rounds' spread is printed.

    .venv/bin/python bench/bench_n_compaction.py                      # 10 M records, 3 rounds
    .venv/bin/python bench/bench_n_compaction.py --records 1000000 --keys 100000
    .venv/bin/python bench/bench_n_compaction.py --produce --produce-records 3000000 --rounds 3

Under pytest (`make bench`) it runs with --bench-records records (1 M) and
a tenth as many keys, one round, and checks that the log compacted.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SEGMENT_BYTES = 256 << 20
VALUE_BYTES = 100
BATCH = 1000


def write_log(path: str, records: int, keys: int, seed: int = 20240601) -> int:
    from pylog.log.log import Log
    rng = random.Random(seed)
    value = bytes(rng.randrange(256) for _ in range(VALUE_BYTES))
    with Log.open(path, segment_bytes=SEGMENT_BYTES) as log:
        for _ in range(0, records, BATCH):
            log.append_batch([value] * BATCH, [b"key-%09d" % rng.randrange(keys) for _ in range(BATCH)])
        log.roll()
        return log.size_bytes


def _files(path):
    return [os.path.join(path, n) for n in sorted(os.listdir(path)) if os.path.isfile(os.path.join(path, n))]


def copy_round(src: str, dst: str) -> float:
    os.makedirs(dst)
    t = time.perf_counter()
    for f in _files(src):
        out = os.path.join(dst, os.path.basename(f))
        shutil.copyfile(f, out)
        fd = os.open(out, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - t


def clean_round(src: str, dst: str, keys: int):
    from pylog.log.log import Log
    shutil.copytree(src, dst)
    os.sync()
    buffer = int(keys / 0.9 + 1) * 16
    t = time.perf_counter()
    with Log.open(dst, segment_bytes=SEGMENT_BYTES) as log:
        stats = log.compact(dedupe_buffer_size=buffer)
    return time.perf_counter() - t, stats


def run(records: int, keys: int, rounds: int, root: str | None = None) -> dict:
    work = tempfile.mkdtemp(prefix="pylog-bench-n-", dir=root)
    try:
        pristine = os.path.join(work, "pristine", "t-0")
        log_bytes = write_log(pristine, records, keys)
        seg_bytes = sum(os.path.getsize(f) for f in _files(pristine) if f.endswith(".log"))
        file_bytes = sum(os.path.getsize(f) for f in _files(pristine))
        clean, copy, last = [], [], None
        for i in range(rounds):
            dst = os.path.join(work, f"copy-{i}")
            copy.append(copy_round(pristine, dst))
            shutil.rmtree(dst)
            dst = os.path.join(work, f"clean-{i}", "t-0")
            secs, last = clean_round(pristine, dst, keys)
            clean.append((secs, last))
            shutil.rmtree(os.path.dirname(dst))
        secs = statistics.median(c[0] for c in clean)
        moved = statistics.median((c[1].bytes_read + c[1].bytes_written) / c[0] for c in clean) / 1e6
        copy_s = statistics.median(copy)
        return dict(records=records, keys=keys, rounds=rounds, log_bytes=log_bytes, seg_bytes=seg_bytes,
                    clean_s=secs, clean_read_written_mb_s=moved, clean_log_mb_s=seg_bytes / secs / 1e6,
                    copy_s=copy_s, copy_read_written_mb_s=2 * file_bytes / copy_s / 1e6,
                    copy_mb_s=file_bytes / copy_s / 1e6,
                    records_kept=last.records_kept, bytes_written=last.bytes_written,
                    map_entries=last.map_entries, map_bytes_per_entry=last.map_bytes_per_entry,
                    map_bytes_per_key=last.map_bytes_per_key)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(r: dict) -> str:
    return "\n".join([
        f"bench N: {r['records']:,} records over {r['keys']:,} keys, {r['log_bytes'] / 1e6:.0f} MB of log, "
        f"medians of {r['rounds']} rounds",
        f"  cleaner: {r['clean_s']:.2f} s, {r['clean_read_written_mb_s']:.0f} MB/s read + rewritten, "
        f"{r['clean_log_mb_s']:.0f} MB/s of log; kept {r['records_kept']:,} records, "
        f"{r['bytes_written'] / 1e6:.0f} MB",
        f"  copy:    {r['copy_s']:.2f} s, {r['copy_read_written_mb_s']:.0f} MB/s read + written, "
        f"{r['copy_mb_s']:.0f} MB/s of files (copyfile + fsync)",
        f"  map: {r['map_bytes_per_entry']} bytes per slot, {r['map_bytes_per_key']:.1f} bytes per key at "
        f"load factor 0.9 ({r['map_entries']:,} keys)",
        f"  goals: >= 500 MB/s read + rewritten: {'PASS' if r['clean_read_written_mb_s'] >= 500 else 'FAIL'}; "
        f"<= 16 bytes per key (slot): {'PASS' if r['map_bytes_per_entry'] <= 16 else 'FAIL'}",
    ])


PRODUCE_STEP = 20_000


def _broker(data_dir, enabled: bool, io_max: float | None):
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from brokerproc import BrokerProc
    extra = () if io_max is None else (f"log.cleaner.io.max.bytes.per.second={io_max}",)
    return BrokerProc(data_dir, log_level="INFO", overrides=(
        "num.partitions=1", "offsets.topic.replication.factor=1", "log.cleaner.backoff.ms=100",
        f"log.cleaner.enable={'true' if enabled else 'false'}", *extra))


def _alter(admin, topic, key, value):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    res = ConfigResource("TOPIC", topic, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(60)


def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread name of process pid, summed over
    threads of one name, the main thread as "<main>" (Linux /proc; {}
    elsewhere)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = "<main>" if tid == str(pid) else stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpu_split(before: dict, after: dict) -> dict[str, float]:
    # The cleaner threads ("kafka-log-cleaner-thread-N", cut to 15 characters
    # by the kernel), the broker's main thread (its event loop: the process's
    # own name) and every other thread of the broker.
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    cleaner = sum(v for k, v in d.items() if k.startswith("kafka-log-clean"))
    loop = d.get("<main>", 0.0)
    return {"cleaner": cleaner, "loop": loop, "other": sum(d.values()) - cleaner - loop}


def produce_window(work: str, records: int, enabled: bool, window_s: float,
                   io_max: float | None = None) -> tuple[float, int, float, dict]:
    """One broker process: kv prefilled, then produce to "other" for window_s
    while kv is cleaned (enabled) or not. (seconds, records produced, the
    cleaning round's own seconds or 0, CPU seconds of the broker's threads and
    of this client process during the window)."""
    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient, NewTopic
    data_dir = os.path.join(work, f"broker-{'on' if enabled else 'off'}")
    b = _broker(data_dir, enabled, io_max)
    try:
        bs = f"127.0.0.1:{b.port}"
        admin = AdminClient({"bootstrap.servers": bs})
        fs = admin.create_topics([
            NewTopic("kv", 1, 1, config={"cleanup.policy": "compact", "segment.bytes": str(16 << 20),
                                         "min.cleanable.dirty.ratio": "1"}),
            NewTopic("other", 3, 1)])
        for f in fs.values():
            f.result(60)
        rng = random.Random(7)
        value = bytes(rng.randrange(256) for _ in range(VALUE_BYTES))
        keys = max(1, records // 10)
        p = ck.Producer({"bootstrap.servers": bs, "acks": "1", "linger.ms": 20, "batch.size": 1 << 20,
                         "queue.buffering.max.messages": 2_000_000})
        for i in range(records):
            while True:
                try:
                    p.produce("kv", value, key=b"key-%09d" % rng.randrange(keys), partition=0)
                    break
                except BufferError:
                    p.poll(0.05)
        p.flush(600)
        os.sync()  # the prefill's dirty pages are not the cleaner's cost
        _alter(admin, "kv", "min.cleanable.dirty.ratio", "0.01")
        cpu0, me0 = _thread_cpu(b.proc.pid), time.process_time()
        t0 = time.perf_counter()
        sent = 0
        while time.perf_counter() - t0 < window_s:
            for i in range(PRODUCE_STEP):
                while True:
                    try:
                        p.produce("other", value, partition=i % 3)
                        break
                    except BufferError:
                        p.poll(0.01)
            p.flush(600)
            sent += PRODUCE_STEP
        elapsed = time.perf_counter() - t0
        cpu = _cpu_split(cpu0, _thread_cpu(b.proc.pid))
        cpu["client"] = time.process_time() - me0
        if not enabled:
            return elapsed, sent, 0.0, cpu
        marker = "cleaned kv-0"
        while marker not in b.stderr():
            if time.perf_counter() - t0 > 900:
                raise RuntimeError(f"no cleaning round of kv within 900 s:\n{b.stderr()[-3000:]}")
            time.sleep(0.2)
        line = [ln for ln in b.stderr().splitlines() if marker in ln][0]
        return elapsed, sent, float(line.split(" in ")[1].split(" s ")[0]), cpu
    finally:
        b.stop()


def run_produce(records: int, rounds: int, root: str | None = None, io_max: float | None = None,
                window_s: float = 5.0) -> dict:
    ratios, on_rates, off_rates, cleaner_s, cpus = [], [], [], [], {True: [], False: []}
    for i in range(rounds):
        work = tempfile.mkdtemp(prefix="pylog-bench-n3-", dir=root)
        try:
            # The two runs of a round in alternating order: neither always
            # comes second (after the other's files and page cache).
            order = (True, False) if i % 2 == 0 else (False, True)
            runs = {on: produce_window(work, records, on, window_s, io_max) for on in order}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        on_rates.append(runs[True][1] / runs[True][0])
        off_rates.append(runs[False][1] / runs[False][0])
        ratios.append(on_rates[-1] / off_rates[-1])
        cleaner_s.append(runs[True][2])
        for on in (True, False):
            cpus[on].append({k: v / runs[on][0] for k, v in runs[on][3].items()})  # cores busy
    cpu = {on: {k: statistics.median(c[k] for c in cpus[on]) for k in cpus[on][0]} for on in cpus}
    return dict(cpu_on=cpu[True], cpu_off=cpu[False], produce_records=records, rounds=rounds, io_max=io_max, window_s=window_s,
                ratio=statistics.median(ratios), ratios=ratios, on_rate=statistics.median(on_rates),
                off_rate=statistics.median(off_rates), cleaner_s=statistics.median(cleaner_s),
                busy=statistics.median(min(c, window_s) / window_s for c in cleaner_s))


def report_produce(r: dict) -> str:
    return "\n".join([
        f"bench N (produce beside the cleaner): kv of {r['produce_records']:,} records, medians of "
        f"{r['rounds']} rounds, log.cleaner.io.max.bytes.per.second "
        f"{'unlimited' if r['io_max'] is None else format(r['io_max'], '.0f')}",
        f"  other partitions: {r['on_rate']:,.0f} records/s while kv is cleaned, {r['off_rate']:,.0f} "
        f"records/s without the cleaner: {r['ratio']:.2f}x (rounds: "
        f"{', '.join(f'{x:.2f}' for x in r['ratios'])})",
        f"  window {r['window_s']:.1f} s; the cleaning round {r['cleaner_s']:.1f} s (busy for "
        f"{100 * r['busy']:.0f}% of the window)",
        *(f"  cores busy over the window ({label}): cleaner threads {c['cleaner']:.2f}, broker main "
          f"thread (event loop) {c['loop']:.2f}, other broker threads {c['other']:.2f}, producing client "
          f"{c['client']:.2f}" for label, c in (("with cleaner", r["cpu_on"]), ("without", r["cpu_off"]))),
        f"  goal >= 0.9x: {'PASS' if r['ratio'] >= 0.9 else 'FAIL'}",
    ])


def test_n_compaction(cfg, bench_root):
    r = run(cfg.records, max(1, cfg.records // 10), 1, bench_root)
    print("\n" + report(r))
    assert r["records_kept"] <= r["keys"] and r["map_entries"] > 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=10_000_000)
    p.add_argument("--keys", type=int, default=None, help="default: records / 10")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=None, help="where the logs go (default: the temp dir)")
    p.add_argument("--produce", action="store_true", help="the third figure: produce beside the broker's cleaner")
    p.add_argument("--produce-records", type=int, default=3_000_000)
    p.add_argument("--window", type=float, default=5.0, help="seconds of produce per run (--produce)")
    p.add_argument("--cleaner-io-max", type=float, default=None,
                   help="log.cleaner.io.max.bytes.per.second for --produce (default: Kafka's, unlimited)")
    a = p.parse_args(argv)
    if a.produce:
        print(report_produce(run_produce(a.produce_records, a.rounds, a.dir, a.cleaner_io_max, a.window)))
        return
    if a.records < BATCH or a.records % BATCH:
        p.error("--records must be a positive multiple of 1000")
    print(report(run(a.records, a.keys or a.records // 10, a.rounds, a.dir)))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(HERE))
    main()
