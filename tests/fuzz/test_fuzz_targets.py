"""A short run of every fuzz target (fuzz/): the seed corpus from the real
clients' frames replayed, then some thousands of mutations. A crash, an
exception outside a target's contract, or a sanitizer report fails the test;
`make fuzz` runs the same targets for minutes each."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FUZZ = os.path.join(ROOT, "fuzz")
FINDINGS = os.path.join(FUZZ, "findings")
sys.path.insert(0, FUZZ)

import fuzz_records  # noqa: E402
import fuzz_requests  # noqa: E402
import seeds  # noqa: E402

from pylog.protocol.framing import decode_request  # noqa: E402

# Mutations per target after the seeds: enough to leave the seeds' paths, few
# enough for `make test`.
RUNS = {"requests": 30000, "decompress": 20000, "records": 3000}


def findings(prefix):
    return sorted(os.path.join(FINDINGS, f) for f in os.listdir(FINDINGS) if f.startswith(prefix))


def fuzz(target, tmp_path, runs, env=None):
    corpus = tmp_path / "corpus"
    seeds.write(str(corpus), [target])
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    argv = [sys.executable, os.path.join(FUZZ, f"fuzz_{target}.py"), str(corpus / target),
            f"-runs={runs}", "-seed=1", f"-artifact_prefix={artifacts}/"]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, **(env or {})))
    crashes = list(artifacts.iterdir())
    assert r.returncode == 0 and not crashes, \
        f"{target}: exit {r.returncode}, inputs {crashes}\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    assert f"Done {runs} runs" in r.stderr, r.stderr[-2000:]


def test_seeds_reach_every_advertised_api_and_version():
    # Each (api_key, version) the broker advertises has a seed that decodes,
    # so mutation starts inside every decoder.
    reached = set()
    for _name, data in seeds.request_seeds():
        frame, pair = fuzz_requests.pick(data)
        if pair is None:
            continue
        header, _body = decode_request(memoryview(frame))
        assert (header.request_api_key, header.request_api_version) == pair
        reached.add(pair)
    assert reached == set(fuzz_requests.PAIRS)
    assert len(reached) > 90  # the 30-odd advertised APIs, several versions each


def test_seeds_include_the_real_clients_frames():
    names = [name for name, _ in seeds.request_seeds()]
    assert any(n.startswith("librdkafka-") for n in names)
    assert any(n.startswith("kafka-python-") for n in names)


def test_fuzz_requests_short_run(tmp_path):
    fuzz("requests", tmp_path, RUNS["requests"])


def test_fuzz_decompress_short_run(tmp_path):
    fuzz("decompress", tmp_path, RUNS["decompress"])


def test_fuzz_records_short_run(tmp_path):
    # lenient: the known gap below (accepted batches that do not read back)
    # would stop the run at once; everything else is checked.
    logs = tmp_path / "logs"
    logs.mkdir()
    fuzz("records", tmp_path, RUNS["records"],
         env={"PYLOG_FUZZ_READBACK": "lenient", "PYLOG_FUZZ_TMP": str(logs)})


@pytest.mark.parametrize("path", findings("records-accepted-"), ids=os.path.basename)
def test_accepted_batches_read_back(path):
    with open(path, "rb") as f:
        fuzz_records.test_one(f.read())


@pytest.mark.parametrize("prefix", ["requests-", "decompress-"])
def test_findings_stay_fixed(prefix):
    import fuzz_decompress
    target = {"requests-": fuzz_requests, "decompress-": fuzz_decompress}[prefix]
    for path in findings(prefix):
        with open(path, "rb") as f:
            target.test_one(f.read())


def cc():
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    pytest.fail("no C compiler")


def test_batch_parser_replay_under_asan_ubsan(tmp_path):
    """The libFuzzer target of engine/batch.c, built by the C compiler at
    hand (gcc: no libFuzzer) with ASAN and UBSAN around fuzz/replay.c: seeds,
    saved findings, then seeded random mutations."""
    exe = tmp_path / "batch_replay"
    build = [cc(), "-std=c11", "-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
             "-fno-sanitize-recover=undefined", "-Wall", "-Wextra", "-Werror", "-Iengine", "-o", str(exe),
             "fuzz/batch_fuzz.c", "fuzz/replay.c"] + sorted(
        os.path.join("engine", f) for f in os.listdir(os.path.join(ROOT, "engine")) if f.endswith(".c"))
    r = subprocess.run(build, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    corpus = tmp_path / "corpus"
    seeds.write(str(corpus), ["batch"])
    crash = tmp_path / "crash.bin"
    r = subprocess.run([str(exe), "-mutations=300000", "-seed=1", f"-crash={crash}",
                        str(corpus / "batch")] + findings("batch-"),
                       capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, ASAN_OPTIONS="abort_on_error=1:detect_leaks=1",
                                UBSAN_OPTIONS="abort_on_error=1:print_stacktrace=1"))
    assert r.returncode == 0 and "no failure" in r.stdout, \
        f"exit {r.returncode}; input in {crash}\n{r.stdout}\n{r.stderr[-6000:]}"
