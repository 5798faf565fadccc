"""Time the KIP-848 assignors (pylog/groups/consumer_assignors.py) on fresh groups and on one
member joining a settled group: median of 5 runs each. They run on the group coordinator's event
loop when a group epoch moves. Run: .venv/bin/python bench/assignor_timing.py"""
import random
import statistics
import time
import uuid

from pylog.groups.consumer_assignors import MemberSubscription, assign


def run(name, members, topics, parts, hetero=False, reps=5):
    """hetero: each member subscribes to a random half of the topics."""
    rnd = random.Random(1)
    tids = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(topics)]
    ppt = {t: parts // topics for t in tids}
    subs = {}
    for i in range(members):
        ts = frozenset(list(tids) if not hetero else rnd.sample(tids, max(1, topics // 2)))
        subs[f"member-{i:05d}"] = ts
    ms = {m: MemberSubscription(None, None, s, {}) for m, s in subs.items()}
    first = assign(name, ms, ppt)
    # steady state: one member joins
    ms2 = {m: MemberSubscription(None, None, s, first[m]) for m, s in subs.items()}
    ms2["member-new"] = MemberSubscription(None, None, frozenset(tids), {})
    times_fresh, times_join = [], []
    for _ in range(reps):
        t = time.perf_counter(); assign(name, ms, ppt); times_fresh.append(time.perf_counter() - t)
        t = time.perf_counter(); assign(name, ms2, ppt); times_join.append(time.perf_counter() - t)
    print(f"{name:8} hetero={hetero!s:5} members={members:5} topics={topics:4} partitions={parts:6}: "
          f"fresh {statistics.median(times_fresh)*1000:8.1f} ms, join {statistics.median(times_join)*1000:8.1f} ms")


if __name__ == "__main__":
    for args in [(10, 1, 60), (100, 10, 1000), (1000, 100, 10000)]:
        run("uniform", *args)
        run("uniform", *args, hetero=True)
        run("range", *args)
