#!/usr/bin/env python3
"""Summarise a pytest-benchmark JSON file from `make bench` as Markdown.

    python bench/report.py .benchmarks/last.json [--md OUT.md] [--strict]

Prints one table per scenario (implementation, median time, records/s, ratio to
LMDB, and GB/s for F), then a PASS/FAIL line per goal, and writes the same text to
OUT.md (default: the JSON path with .md, i.e. .benchmarks/last.md). Missing rows
(pylog skipped, a peer deselected) are reported as such, never as a crash.
--strict: exit 1 when a goal FAILs (a missing pylog row is not a failure).

records/s = extra_info["records"] / median seconds of the rounds; each round does
the whole workload once, so the median is over whole runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

# scenario group -> (title, what one record means, goal)
# goal: ("ratio", peer impl, minimum ratio) or ("gbps", None, minimum GB/s)
SCENARIOS = [
    ("A_append_batch", "A. append_batch, 1000 records per call", ("ratio", "lmdb", 2.0)),
    ("B_append", "B. append, one record per call", ("ratio", "file", 1.0)),
    ("C_scan", "C. full scan of values", ("ratio", "lmdb", 1.5)),
    ("D_random_read", "D. random read by offset", ("ratio", "lmdb", 2.0)),
    ("E_append_fsync", "E. append_batch of 1000 + fdatasync per batch", ("ratio", "file", 1.0)),
    ("F_recovery", 'F. recovery: Log.open(recovery="full") over ~1 GiB', ("gbps", None, 1.0)),
]
IMPL_ORDER = ["pylog", "lmdb", "sqlite", "file", "crc32c"]
IMPL_NAME = {"pylog": "pylog", "lmdb": "LMDB", "sqlite": "SQLite", "file": "plain file", "crc32c": "crc32c (read + CRC)"}


def fmt_time(s: float) -> str:
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def fmt_rate(r: float) -> str:
    if r >= 1e6:
        return f"{r / 1e6:.2f} M"
    if r >= 1e3:
        return f"{r / 1e3:.1f} k"
    return f"{r:.0f}"


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}x"


def load(path: str):
    with open(path) as f:
        data = json.load(f)
    rows: dict[str, dict[str, dict]] = {}
    for b in data.get("benchmarks", []):
        ei = b.get("extra_info") or {}
        scen = ei.get("scenario") or b.get("group") or "?"
        impl = ei.get("impl") or b.get("name", "?")
        st = b.get("stats") or {}
        med = st.get("median")
        if not med:
            continue
        row = dict(
            name=b.get("name"),
            median=med,
            iqr=st.get("iqr"),
            min=st.get("min"),
            max=st.get("max"),
            rounds=st.get("rounds"),
            records=ei.get("records"),
            bytes=ei.get("bytes"),
            note=ei.get("note", ""),
            source=ei.get("source"),
            load=ei.get("loadavg1"),
            broker_cpu=ei.get("broker_cpu_s_per_m"),
            client_cpu=ei.get("client_cpu_s_per_m"),
            broker_cpu_rounds=ei.get("broker_cpu_rounds"),
            file_cpu=ei.get("file_cpu_s_per_m"),
            start_ms=ei.get("start_median_ms"),
            cold_ms=ei.get("cold_start_median_ms"),
            broker_cpu_k=ei.get("broker_cpu_s_per_k"),
            client_cpu_k=ei.get("client_cpu_s_per_k"),
            settle_s=ei.get("settle_s"),
            settle_rounds=ei.get("settle_rounds"),
            goal_s=ei.get("goal_s"),
            broker_cpu_each=ei.get("broker_cpu_each_s_per_m"),
            zk_cpu=ei.get("zk_cpu_s_per_m"),
            fetch_max_bytes=ei.get("replica_fetch_max_bytes"),
            fetch_wait_ms=ei.get("replica_fetch_wait_max_ms"),
            extra=ei,
        )
        row["rps"] = row["records"] / med if row["records"] else None
        row["gbps"] = row["bytes"] / med / 1e9 if row["bytes"] else None
        rows.setdefault(scen, {})[impl] = row
    return data, rows


def scenario_md(scen, title, goal, impls):
    out = [f"### {title}", ""]
    if not impls:
        out += ["(no results: scenario not run or all rows skipped)", ""]
        return out, ("SKIP", "SKIP: scenario not run")
    recs = sorted({r["records"] for r in impls.values() if r["records"]})
    if recs:
        out.append("records per round: " + ", ".join(f"{r:,}" for r in recs))
        out.append("")
    is_f = goal[0] == "gbps"
    lm = impls.get("lmdb")
    head = ["implementation", "median", "records/s", "vs LMDB"] + (["GB/s"] if is_f else []) + ["IQR", "rounds"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    order = [i for i in IMPL_ORDER if i in impls] + sorted(i for i in impls if i not in IMPL_ORDER)
    for impl in order:
        r = impls[impl]
        ratio = r["rps"] / lm["rps"] if (lm and lm["rps"] and r["rps"]) else None
        iqr = f"{100 * r['iqr'] / r['median']:.0f}%" if r.get("iqr") is not None else "—"
        cells = [IMPL_NAME.get(impl, impl), fmt_time(r["median"]), fmt_rate(r["rps"]) if r["rps"] else "—", fmt_ratio(ratio)]
        if is_f:
            cells.append(f"{r['gbps']:.2f}" if r["gbps"] else "—")
        cells += [iqr, str(r["rounds"])]
        out.append("| " + " | ".join(cells) + " |")
    missing = [IMPL_NAME[i] for i in ("pylog", "lmdb", "sqlite", "file") if i not in impls and not (is_f and i in ("lmdb", "sqlite"))]
    if missing:
        out.append("")
        out.append("not measured: " + ", ".join(missing))
    src = {r["source"] for r in impls.values() if r.get("source")}
    if src:
        out.append("")
        out.append("data: " + "; ".join(sorted(src)))
    out.append("")

    kind, peer, need = goal
    py = impls.get("pylog")
    if kind == "gbps":
        desc = f"goal >= {need:g} GB/s"
        if not py or not py["gbps"]:
            verdict = ("SKIP", f"SKIP: pylog recovery not measured ({desc})")
        else:
            ok = py["gbps"] >= need
            verdict = ("PASS" if ok else "FAIL", f"{'PASS' if ok else 'FAIL'}: pylog recovery {py['gbps']:.2f} GB/s ({desc})")
    else:
        pname = "LMDB" if peer == "lmdb" else IMPL_NAME[peer]
        desc = f"goal >= {need:g}x"
        p = impls.get(peer)
        if not py or not py["rps"]:
            verdict = ("SKIP", f"SKIP: pylog not measured ({desc} {pname})")
        elif not p or not p["rps"]:
            verdict = ("SKIP", f"SKIP: {pname} not measured ({desc} {pname})")
        else:
            x = py["rps"] / p["rps"]
            ok = x >= need
            verdict = ("PASS" if ok else "FAIL", f"{'PASS' if ok else 'FAIL'}: pylog {x:.1f}x {pname} ({desc})")
    out.append(f"**{verdict[1]}**")
    out.append("")
    return out, verdict


# G: the broker. impl -> (goal on msg/s or None, goal on broker CPU s per million)
BROKER_ROWS = [("produce acks=1", 700_000, 0.15), ("produce acks=all", 700_000, 0.15), ("consume", None, 0.1)]


def broker_md(impls):
    out = ["### G. The broker over loopback, driven by confluent-kafka (100-byte messages, 6 partitions)", ""]
    if not impls:
        return out + ["(not run)", ""], []
    out += ["| phase | msg/s | MB/s | broker CPU s / M msgs | plain file, same bytes | client CPU s / M msgs "
            "| broker CPU per round | rounds |",
            "|---|---:|---:|---:|---:|---:|---|---:|"]
    verdicts = []
    for impl, rate_goal, cpu_goal in BROKER_ROWS:
        r = impls.get(impl)
        if r is None:
            out.append(f"| {impl} | not measured | | | | | | |")
            verdicts.append(("SKIP", f"SKIP: {impl} not measured"))
            continue
        rounds = ", ".join(f"{x:.3f}" for x in r.get("broker_cpu_rounds") or [])
        peer = f"{r['file_cpu']:.3f}" if r.get("file_cpu") is not None else "—"
        out.append(f"| {impl} | {fmt_rate(r['rps'])} | {r['gbps'] * 1e3:.0f} | {r['broker_cpu']:.3f} | {peer} | "
                   f"{r['client_cpu']:.3f} | {rounds} | {r['rounds']} |")
        ok_rate = rate_goal is None or r["rps"] >= rate_goal
        ok_cpu = r["broker_cpu"] <= cpu_goal
        goal = (f"goal >= {rate_goal:,} msg/s and " if rate_goal else "goal ") + f"broker CPU <= {cpu_goal} s/M"
        verdicts.append(("PASS" if ok_rate and ok_cpu else "FAIL",
                         f"{'PASS' if ok_rate and ok_cpu else 'FAIL'}: {impl} {fmt_rate(r['rps'])} msg/s, "
                         f"broker {r['broker_cpu']:.3f} s/M, client {r['client_cpu']:.3f} s/M ({goal})"))
    out += ["", "Medians over rounds; CPU is user+system time of all threads (broker: /proc schedstat; "
            "client: getrusage, librdkafka's threads included). Where client CPU far exceeds broker CPU "
            "the client is the limit. 'plain file, same bytes': CPU to pwrite as many bytes as the broker "
            "stored in that round (the floor of storing them), measured right after it.", ""]
    out += [f"**{v[1]}**" for v in verdicts] + [""]
    return out, verdicts


def metrics_overhead_md(impls):
    """G's metrics row: produce rounds alternating between a broker without and
    one with pylog.metrics.listener (scraped every second); a reference, no goal."""
    out = []
    for impl, r in impls.items():
        e = r["extra"]
        out += [f"G, {impl} ({e['pairs']} pairs, {e['scrapes']} scrapes every {e['scrape_s']:g} s): "
                f"off {fmt_rate(e['off_rate'])} msg/s, broker {e['off_broker_cpu_s_per_m']:.3f} s/M; "
                f"on {fmt_rate(e['on_rate'])} msg/s, broker {e['on_broker_cpu_s_per_m']:.3f} s/M; "
                f"median per pair: throughput off/on {e['rate_ratio_off_on']:.3f}x "
                f"({', '.join(f'{x:.2f}' for x in e['rate_ratios'])}), broker CPU on/off "
                f"{e['cpu_ratio_on_off']:.3f}x ({', '.join(f'{x:.2f}' for x in e['cpu_ratios'])}).", ""]
    return out


def _embedded_floor_lines(impls):
    """What goal 4 asks against what this run measured any producer must spend:
    5x a network row in wall time, on this machine's cores, set beside the
    floors (the per-message loop; encoding and writing, which the embedded
    mode's caller and writer threads can at best overlap)."""
    rps = {k: impls[k]["rps"] for k in impls if impls.get(k) and impls[k].get("rps")}
    loop, enc, wr = (rps.get(k) for k in ("floor: send loop, no-op callee", "floor: encode only",
                                          "floor: pwrite of the batches"))
    out = []
    if "pylog send" in rps and loop:
        need = 5 * rps["pylog send"]
        out.append(f"- Goal 4, send: 5x pylog send = {fmt_rate(need)} calls/s ({1e9 / need:.0f} ns each); "
                   f"the same loop calling a no-op runs at {fmt_rate(loop)} ({1e9 / loop:.0f} ns each).")
    if "pylog send_many" in rps and enc and wr:
        need = 5 * rps["pylog send_many"]
        cores = os.cpu_count() or 1
        per_msg = 1e9 / enc + 1e9 / wr
        out.append(f"- Goal 4, send_many: 5x pylog send_many = {fmt_rate(need)} msg/s ({1e9 / need:.0f} ns "
                   f"each); encoding alone costs {1e9 / enc:.0f} ns and writing the batches with plain "
                   f"pwrite {1e9 / wr:.0f} ns per message: {per_msg:.0f} ns, so at best "
                   f"{fmt_rate(min(enc, wr, cores * 1e9 / per_msg))} msg/s with the two perfectly overlapped "
                   f"on {cores} cores and nothing else spent.")
    return out + ([""] if out else [])


def startup_md(impls):
    r = impls.get("start+stop")
    out = ["### H. Start-up of the embedded broker (running_broker(), the kafka_broker fixture)", ""]
    if r is None or r.get("start_ms") is None:
        return out + ["(not run)", ""], []
    cold = r.get("cold_ms")
    ok = r["start_ms"] < 100 and (cold is None or cold < 100)
    v = ("PASS" if ok else "FAIL", f"{'PASS' if ok else 'FAIL'}: start-up {r['start_ms']:.1f} ms median"
         + (f", {cold:.0f} ms with the first import" if cold is not None else "") + " (goal < 100 ms)")
    out += [f"start-up (enter of running_broker(): temp dir, logs opened, listening, thread ready) median "
            f"{r['start_ms']:.1f} ms; start+stop {fmt_time(r['median'])} median over {r['rounds']} rounds; "
            + (f"import of pylog.testing plus start-up in a fresh interpreter {cold:.0f} ms median of 5"
               if cold is not None else ""), "", f"**{v[1]}**", ""]
    return out, [v]


def groups_md(impls):
    out = ["### I. Consumer groups (confluent-kafka against the broker process)", ""]
    verdicts = []
    c = impls.get("offset commits")
    if c is None:
        out.append("offset commits: not measured")
        verdicts.append(("SKIP", "SKIP: offset commits not measured"))
    else:
        ok = c["rps"] >= 20000
        out.append(f"offset commits (10 partitions per OffsetCommit request, asynchronous): {fmt_rate(c['rps'])} "
                   f"commits/s, median of {c['rounds']} rounds of {c['records']:,}; broker CPU "
                   f"{c['broker_cpu_k'] * 1000:.1f} µs per commit, client {c['client_cpu_k'] * 1000:.1f} µs")
        verdicts.append(("PASS" if ok else "FAIL", f"{'PASS' if ok else 'FAIL'}: {fmt_rate(c['rps'])} commits/s "
                         "(goal >= 20,000 commits/s)"))
    s = impls.get("group of 10 settles")
    if s is None:
        out.append("settle: not measured")
        verdicts.append(("SKIP", "SKIP: group settle time not measured"))
    else:
        ok = s["settle_s"] <= s["goal_s"]
        rounds = ", ".join(f"{x:.2f}" for x in s.get("settle_rounds") or [])
        out.append(f"group of 10 settles {s['settle_s']:.2f} s after the last member subscribed "
                   f"(rounds: {rounds} s; group.initial.rebalance.delay.ms = 3000)")
        verdicts.append(("PASS" if ok else "FAIL", f"{'PASS' if ok else 'FAIL'}: a group of 10 settles in "
                         f"{s['settle_s']:.2f} s (goal <= {s['goal_s']:.1f} s)"))
    out += [""] + [f"**{v[1]}**" for v in verdicts] + [""]
    return out, verdicts


# J: pylog's clients against confluent-kafka / kafka-python, same broker, same run.
# (impl, kind) in table order; kind "p" = producer (ratio to confluent produce),
# "c" = consumer (ratio to the better confluent consume row).
CLIENT_ROWS = [
    ("confluent produce", "p"), ("pylog send", "p"), ("pylog send_many", "p"), ("kafka-python send", "p"),
    ("pylog embedded send", "p"), ("pylog embedded send_many", "p"),
    ("floor: send loop, no-op callee", "f"), ("floor: encode only", "f"), ("floor: pwrite of the batches", "f"),
    ("confluent consume", "c"), ("confluent consume tuned", "c"), ("pylog poll", "c"),
    ("kafka-python poll", "c"), ("pylog embedded poll", "c"),
]
# (label, impl, peer impl or "best confluent consume", minimum ratio)
CLIENT_GOALS = [
    ("1. send", "pylog send", "confluent produce", 0.8),
    ("2. send_many", "pylog send_many", "confluent produce", 3.0),
    ("3. consumer", "pylog poll", "best confluent consume", 1.0),
    ("4. embedded send_many", "pylog embedded send_many", "pylog send_many", 5.0),
    ("4. embedded send", "pylog embedded send", "pylog send", 5.0),
]


def _best_confluent_consume(impls):
    found = [impls[i] for i in ("confluent consume", "confluent consume tuned") if impls.get(i) and impls[i]["rps"]]
    if not found:
        return None, None
    best = max(found, key=lambda r: r["rps"])
    return best, [i for i in ("confluent consume", "confluent consume tuned") if impls.get(i) is best][0]


def clients_md(impls):
    out = ["### J. pylog's clients vs confluent-kafka and kafka-python (same broker process, same run; "
           "100-byte messages, 6 partitions, acks=1, linger 5 ms, batch size 1,000,000)", ""]
    if not impls:
        return out + ["(not run)", ""], []
    prod_ref = impls.get("confluent produce")
    cons_ref, cons_ref_name = _best_confluent_consume(impls)
    out += ["| client | messages | msg/s | vs confluent | client CPU s / M msgs | broker CPU s / M msgs "
            "| IQR | rounds |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    known = [i for i, _ in CLIENT_ROWS]
    kinds = dict(CLIENT_ROWS)
    for impl in known + sorted(i for i in impls if i not in known):
        r = impls.get(impl)
        if r is None:
            out.append(f"| {impl} | not measured | | | | | | |")
            continue
        ref = cons_ref if kinds.get(impl) == "c" else prod_ref
        ratio = r["rps"] / ref["rps"] if (ref and ref["rps"] and r["rps"]) else None
        if kinds.get(impl) == "f":
            ratio = None   # a reference for goal 4, not a client
        iqr = f"{100 * r['iqr'] / r['median']:.0f}%" if r.get("iqr") is not None else "—"
        bcpu = f"{r['broker_cpu']:.3f}" if r.get("broker_cpu") is not None else "— (no broker)"
        ccpu = f"{r['client_cpu']:.3f}" if r.get("client_cpu") is not None else "—"
        out.append(f"| {impl} | {r['records']:,} | {fmt_rate(r['rps'])} | {fmt_ratio(ratio)} | {ccpu} | {bcpu} "
                   f"| {iqr} | {r['rounds']} |")
    out += ["", "msg/s = messages / median wall time of the rounds (producers: first send to flush() "
            "returning, everything acknowledged; consumers: until all messages were returned). "
            "'vs confluent': producers against confluent produce, consumers against the better of the "
            f"two confluent consume rows ({cons_ref_name or 'none measured'}). Client CPU from getrusage "
            "(all the client's threads), broker CPU from /proc schedstat. kafka-python rows are "
            "references on fewer messages, no goal.", ""]
    verdicts = []
    for label, impl, peer, need in CLIENT_GOALS:
        r = impls.get(impl)
        if peer == "best confluent consume":
            p, pname = cons_ref, cons_ref_name or "confluent consume"
        else:
            p, pname = impls.get(peer), peer
        desc = f"goal >= {need:g}x {pname}" if peer != "best confluent consume" else \
            f"goal >= {need:g}x the better confluent consume row"
        if not r or not r["rps"]:
            verdicts.append(("SKIP", f"SKIP: {label}: {impl} not measured ({desc})"))
        elif not p or not p["rps"]:
            verdicts.append(("SKIP", f"SKIP: {label}: {pname} not measured ({desc})"))
        else:
            x = r["rps"] / p["rps"]
            ok = x >= need
            verdicts.append(("PASS" if ok else "FAIL",
                             f"{'PASS' if ok else 'FAIL'}: {label}: {impl} {fmt_rate(r['rps'])} msg/s = {x:.2f}x "
                             f"{pname} {fmt_rate(p['rps'])} msg/s ({desc})"))
    out += [f"**{v[1]}**" for v in verdicts] + [""]
    out += _embedded_floor_lines(impls)
    return out, verdicts


# K: a 3-broker cluster. Rows in table order; the goal is a ratio to the RF=1 row.
CLUSTER_ROWS = ["RF=1 acks=1", "RF=3 acks=1", "RF=3 acks=all"]
CLUSTER_GOAL = 0.40   # RF=3 acks=all >= 40% of RF=1 (Kafka 2014: 421,823 / 821,557 = 51%)


def cluster_md(impls):
    out = ["### K. 3 brokers + ZooKeeper on one machine: replication overhead (confluent-kafka, "
           "100-byte messages, 6 partitions, linger 5 ms, batch size 1,000,000)", ""]
    if not impls:
        return out + ["(not run)", ""], []
    base = impls.get("RF=1 acks=1")
    out += ["| scenario | msg/s | MB/s | vs RF=1 | broker CPU s / M msgs (3 brokers) | per broker "
            "| client CPU s / M msgs | ZooKeeper CPU s / M | IQR | rounds |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for impl in CLUSTER_ROWS + sorted(i for i in impls if i not in CLUSTER_ROWS):
        r = impls.get(impl)
        if r is None:
            out.append(f"| {impl} | not measured | | | | | | | | |")
            continue
        ratio = r["rps"] / base["rps"] if (base and base["rps"]) else None
        iqr = f"{100 * r['iqr'] / r['median']:.0f}%" if r.get("iqr") is not None else "—"
        each = ", ".join(f"{x:.3f}" for x in r.get("broker_cpu_each") or [])
        zk = f"{r['zk_cpu']:.3f}" if r.get("zk_cpu") is not None else "—"
        out.append(f"| {impl} | {fmt_rate(r['rps'])} | {r['gbps'] * 1e3:.0f} | "
                   f"{'—' if ratio is None else f'{100 * ratio:.0f}%'} | {r['broker_cpu']:.3f} | {each} | "
                   f"{r['client_cpu']:.3f} | {zk} | {iqr} | {r['rounds']} |")
    fmb = {r.get("fetch_max_bytes") for r in impls.values()} - {None}
    fwait = {r.get("fetch_wait_ms") for r in impls.values()} - {None}
    out += ["", "msg/s = messages / median wall time (first produce to flush() returning, all acknowledged). "
            "Broker CPU: user+system of all threads of the three broker processes (/proc schedstat), "
            "summed; client CPU from getrusage. Each round a fresh topic, leaders spread over the three "
            "brokers; the three processes share this machine's cores with the client and ZooKeeper"
            + (f"; replica.fetch.max.bytes={', '.join(f'{x:,}' for x in sorted(fmb))}" if fmb else "")
            + (f", replica.fetch.wait.max.ms={', '.join(str(x) for x in sorted(fwait))}" if fwait else "")
            + ".", ""]
    verdicts = []
    if base and base["rps"]:
        r1 = impls.get("RF=3 acks=1")
        if r1 and r1["rps"]:
            out.append(f"RF=3 acks=1 / RF=1: {100 * r1['rps'] / base['rps']:.0f}% "
                       f"(replication overhead {100 * (1 - r1['rps'] / base['rps']):.0f}%)")
        ra = impls.get("RF=3 acks=all")
        if ra and ra["rps"]:
            x = ra["rps"] / base["rps"]
            out.append(f"RF=3 acks=all / RF=1: {100 * x:.0f}% (replication overhead {100 * (1 - x):.0f}%)")
            ok = x >= CLUSTER_GOAL
            verdicts.append(("PASS" if ok else "FAIL",
                             f"{'PASS' if ok else 'FAIL'}: RF=3 acks=all {fmt_rate(ra['rps'])} msg/s = "
                             f"{100 * x:.0f}% of RF=1 {fmt_rate(base['rps'])} msg/s "
                             f"(goal >= {100 * CLUSTER_GOAL:.0f}%; Kafka 2014: 51%)"))
        else:
            verdicts.append(("SKIP", "SKIP: RF=3 acks=all not measured"))
        out.append("")
    else:
        verdicts.append(("SKIP", "SKIP: RF=1 acks=1 not measured (the goal's baseline)"))
    out += [f"**{v[1]}**" for v in verdicts] + [""]
    return out, verdicts


# L: end-to-end latency at fixed rates. The goal holds for one pylog broker at 50k msg/s.
LATENCY_TARGETS = ["pylog", "pylog-rf3", "tansu", "noida", "redis"]
LATENCY_GOAL = (50000, 5.0, 20.0)   # rate, p99 ms, p99.9 ms


def _ms(x):
    return "—" if x is None else (f"{x:.2f}" if x < 10 else f"{x:.0f}" if x >= 100 else f"{x:.1f}")


def latency_point_note(e):
    """Why a row's figures are not a clean measurement at its rate (empty when they are)."""
    notes = []
    lost = (e.get("lost") or 0) + (e.get("undelivered") or 0)
    if lost:
        notes.append(f"LOST {e.get('lost', 0):,} (undelivered {e.get('undelivered', 0):,})")
    if e.get("produce_errors"):
        notes.append(f"{e['produce_errors']:,} produce errors ({e.get('first_error')})")
    if e.get("duplicates"):
        notes.append(f"{e['duplicates']:,} duplicates")
    ach = e.get("achieved_rate")
    if ach is not None and ach < 0.98 * e["rate"]:
        notes.append(f"producer could not keep the rate ({ach / e['rate']:.0%})")
    if e.get("p99_ms") is None:
        notes.append("nothing received")
    return "; ".join(notes)


def latency_md(impls):
    out = ["### L. End-to-end latency at fixed rates (one producer, acks=all, one consumer; "
           "send = the scheduled time, so stalls count for every message they delay)", ""]
    if not impls:
        return out + ["(not run)", ""], []
    pts = sorted((r["extra"] for r in impls.values()),
                 key=lambda e: (LATENCY_TARGETS.index(e["target"]) if e["target"] in LATENCY_TARGETS else 99,
                                e["size"], e["rate"]))
    out += ["| target | size | rate | achieved | p50 ms | p99 ms | p99.9 ms | max ms | received | lost "
            "| send lag p99 / max ms | wake-up lag p99.9 ms | load | server CPU % | note |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for e in pts:
        ach = e.get("achieved_rate")
        out.append(f"| {e.get('label', e['target'])} | {e['size']} B | {fmt_rate(e['rate'])} | "
                   f"{fmt_rate(ach) if ach else '—'} | {_ms(e.get('p50_ms'))} | {_ms(e.get('p99_ms'))} | "
                   f"{_ms(e.get('p999_ms'))} | {_ms(e.get('max_ms'))} | {e.get('received', 0):,} | "
                   f"{e.get('lost', 0):,} | {_ms(e.get('send_lag_p99_ms'))} / {_ms(e.get('send_lag_max_ms'))} | "
                   f"{_ms(e.get('wake_lag_p999_ms'))} | {e.get('loadavg1', 0):.1f} | "
                   f"{e.get('server_cpu_pct', 0):.0f} | {latency_point_note(e)} |")
    e0 = pts[0]
    flush = next((e["flush_messages"] for e in pts if e.get("flush_messages")), "10000")
    versions = sorted({f"{e.get('label')}: {e.get('version')}" for e in pts})
    out += ["", f"{e0.get('seconds'):g} s measured per point after {e0.get('warmup_s'):g} s of warm-up; "
            f"Kafka producers linger.ms={e0.get('linger_ms')}, batch.size 1 MiB; one partition; pylog with "
            f"log.flush.interval.messages={flush}"
            + (f"; consumer fetch.wait.max.ms={e0['fetch_wait_ms']}" if e0.get("fetch_wait_ms") else "")
            + ". Latency = consumer's clock when the message was returned "
            "minus its scheduled send time. 'achieved' = measured messages / time the producer took to "
            "send them; send lag = how far the producer's own sends fell behind the schedule. Wake-up lag: how "
            "late a thread sleeping 1 ms at a time woke meanwhile (the machine's own floor: on a loaded "
            "box no server gets below it); load = 1-min load average after the point. Server CPU "
            "% of one core over the point (all its threads; the three brokers summed for RF=3).",
            "", "versions: " + "; ".join(versions), ""]
    verdicts = []
    rate, p99_goal, p999_goal = LATENCY_GOAL
    goal_pts = [e for e in pts if e["target"] == "pylog" and e["rate"] == rate]
    if not goal_pts:
        verdicts.append(("SKIP", f"SKIP: one pylog broker at {fmt_rate(rate)} msg/s not measured "
                         f"(goal p99 < {p99_goal:g} ms, p99.9 < {p999_goal:g} ms)"))
    for e in goal_pts:
        note = latency_point_note(e)
        ok = (not note and e["p99_ms"] < p99_goal and e["p999_ms"] < p999_goal)
        verdicts.append(("PASS" if ok else "FAIL",
                         f"{'PASS' if ok else 'FAIL'}: one pylog broker, {fmt_rate(rate)} msg/s x {e['size']} B: "
                         f"p99 {_ms(e.get('p99_ms'))} ms, p99.9 {_ms(e.get('p999_ms'))} ms "
                         f"(goal p99 < {p99_goal:g} ms, p99.9 < {p999_goal:g} ms)" + (f"; {note}" if note else "")))
    out += [f"**{v[1]}**" for v in verdicts] + [""]
    return out, verdicts


# M: transactions. (label, row, reference row, goal ratio)
TXN_ROWS = ["plain (idempotent, acks=all)", "txn every 10,000", "txn every 1,000",
            "consume read_uncommitted", "consume read_committed"]
TXN_GOALS = [("transactional produce, a commit per 10,000", "txn every 10,000",
              "plain (idempotent, acks=all)", 0.8),
             ("read_committed consume", "consume read_committed", "consume read_uncommitted", 0.9)]
TXN_LATENCY = "marker latency (EndTxn -> LSO past marker)"


def transactions_md(impls):
    out = ["### M. Transactions (confluent-kafka, 100-byte messages, 6 partitions, acks=all, "
           "idempotent, linger 5 ms)", ""]
    if not impls:
        return out + ["(not run)", ""], []
    out += ["| row | messages | msg/s | vs reference | client CPU s / M msgs | broker CPU s / M msgs | rounds |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    refs = {"txn every 10,000": "plain (idempotent, acks=all)", "txn every 1,000": "plain (idempotent, acks=all)",
            "consume read_committed": "consume read_uncommitted"}
    for impl in TXN_ROWS:
        r = impls.get(impl)
        if r is None:
            out.append(f"| {impl} | not measured | | | | | |")
            continue
        ref = impls.get(refs.get(impl, ""))
        ratio = r["rps"] / ref["rps"] if (ref and ref["rps"] and r["rps"]) else None
        bcpu = f"{r['broker_cpu']:.3f}" if r.get("broker_cpu") is not None else "—"
        ccpu = f"{r['client_cpu']:.3f}" if r.get("client_cpu") is not None else "—"
        out.append(f"| {impl} | {r['records']:,} | {fmt_rate(r['rps'])} | {fmt_ratio(ratio)} | {ccpu} | {bcpu} "
                   f"| {r['rounds']} |")
    lat = impls.get(TXN_LATENCY)
    out.append("")
    if lat is not None:
        e = lat["extra"]
        out += [f"EndTxn to markers written (the read_committed LSO past the commit marker on all 6 "
                f"partitions), {e.get('transactions')} transactions of 600 messages: p50 "
                f"{e.get('marker_p50_ms')} ms, p99 {e.get('marker_p99_ms')} ms, max {e.get('marker_max_ms')} ms.",
                ""]
    verdicts = []
    for label, impl, peer, need in TXN_GOALS:
        r, p = impls.get(impl), impls.get(peer)
        if not r or not p or not r["rps"] or not p["rps"]:
            verdicts.append(("SKIP", f"SKIP: {label}: {impl} or {peer} not measured (goal >= {need:g}x)"))
            continue
        x = r["rps"] / p["rps"]
        verdicts.append(("PASS" if x >= need else "FAIL",
                         f"{'PASS' if x >= need else 'FAIL'}: {label}: {fmt_rate(r['rps'])} msg/s = {x:.2f}x "
                         f"{peer} {fmt_rate(p['rps'])} msg/s (goal >= {need:g}x)"))
    out += [f"**{v[1]}**" for v in verdicts] + [""]
    return out, verdicts


def build(data, rows, src_path):
    mi = data.get("machine_info") or {}
    ci = data.get("commit_info") or {}
    cpu = (mi.get("cpu") or {}).get("brand_raw") or mi.get("processor") or "?"
    lines = [
        "## pylog benchmarks",
        "",
        f"source: `{src_path}`, {data.get('datetime', '?')}; "
        f"python {mi.get('python_version', '?')}; cpu: {cpu} ({(mi.get('cpu') or {}).get('count', '?')} cores); "
        f"commit {str(ci.get('id') or '?')[:12]}{' (dirty)' if ci.get('dirty') else ''}",
        "",
        "Medians over whole-workload rounds; ratios are records/s divided by LMDB's "
        "(or the plain file's, where the goal says so). On a shared 2-core machine read "
        "medians and ratios, not single runs.",
        "",
    ]
    verdicts = []
    known = {s for s, _, _ in SCENARIOS}
    for scen, title, goal in SCENARIOS:
        md, v = scenario_md(scen, title, goal, rows.get(scen, {}))
        lines += md
        verdicts.append(v)
    g_md, g_verdicts = broker_md(rows.get("G_broker", {}))
    lines += g_md
    known.add("G_broker")
    lines += metrics_overhead_md(rows.get("G_metrics", {}))
    known.add("G_metrics")
    h_md, h_verdicts = startup_md(rows.get("H_startup", {}))
    lines += h_md
    known.add("H_startup")
    i_md, i_verdicts = groups_md(rows.get("I_groups", {}))
    lines += i_md
    known.add("I_groups")
    j_md, j_verdicts = clients_md(rows.get("J_clients", {}))
    lines += j_md
    known.add("J_clients")
    k_md, k_verdicts = cluster_md(rows.get("K_cluster", {}))
    lines += k_md
    known.add("K_cluster")
    l_md, l_verdicts = latency_md(rows.get("L_latency", {}))
    lines += l_md
    known.add("L_latency")
    m_md, m_verdicts = transactions_md(rows.get("M_transactions", {}))
    lines += m_md
    known.add("M_transactions")
    for scen in sorted(set(rows) - known):
        md, _ = scenario_md(scen, scen, ("ratio", "lmdb", 0.0), rows[scen])
        lines += md[:-2]  # table only, no goal line
    loads = [r["load"] for impls in rows.values() for r in impls.values() if r.get("load") is not None]
    if loads:
        ncpu = ((mi.get("cpu") or {}).get("count")) or os.cpu_count() or 1
        busy = max(loads) > ncpu - 0.5
        lines += [f"1-min load average after each benchmark: {min(loads):.2f}-{max(loads):.2f} on {ncpu} cores"
                  + (" (other work competed for the CPU: treat the ratios with care)" if busy else ""), ""]
    lines += ["### Goals", ""]
    lines += [f"- {title.split('.')[0]}: {v[1]}" for (_, title, _), v in zip(SCENARIOS, verdicts)]
    lines += [f"- G: {v[1]}" for v in g_verdicts]
    lines += [f"- H: {v[1]}" for v in h_verdicts]
    lines += [f"- I: {v[1]}" for v in i_verdicts]
    lines += [f"- J: {v[1]}" for v in j_verdicts]
    lines += [f"- K: {v[1]}" for v in k_verdicts]
    lines += [f"- L: {v[1]}" for v in l_verdicts]
    lines += [f"- M: {v[1]}" for v in m_verdicts]
    verdicts = (verdicts + g_verdicts + h_verdicts + i_verdicts + j_verdicts + k_verdicts + l_verdicts
                + m_verdicts)
    lines.append("")
    return "\n".join(lines), verdicts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="?", default=".benchmarks/last.json")
    ap.add_argument("--md", help="where to write the Markdown (default: JSON path with .md)")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any goal FAILs")
    a = ap.parse_args(argv)
    if not os.path.exists(a.json):
        print(f"report.py: {a.json} not found (did the benchmark run?)", file=sys.stderr)
        return 2
    data, rows = load(a.json)
    text, verdicts = build(data, rows, a.json)
    print(text)
    md = a.md or os.path.splitext(a.json)[0] + ".md"
    with open(md, "w") as f:
        f.write(text)
    print(f"(written to {md})")
    if a.strict and any(v[0] == "FAIL" for v in verdicts):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
