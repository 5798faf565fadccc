"""LocalMetadataStore.batch(): the writes made inside reach the disk together,
once per file, when the batch ends and before it returns; other threads never
see them before that; and the controller acknowledges a topic only once its
partition states are on disk.

Real files, a real broker and a real client."""
from __future__ import annotations

import json
import os
import threading
import uuid

import pytest

from pylog.client import Client
from pylog.cluster.local_store import LocalMetadataStore
from pylog.cluster.metadata_store import PartitionState, TopicAssignment
from pylog.testing import running_broker


def _on_disk(path: str, topic: str) -> dict | None:
    try:
        with open(os.path.join(path, "topics", topic + ".json"), "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def test_a_batch_writes_each_file_once_when_it_ends(tmp_path):
    path = str(tmp_path / "meta")
    store = LocalMetadataStore(path)
    try:
        epoch = store.elect_controller(1)
        seen_by_other_thread = []
        with store.batch():
            store.create_topic(TopicAssignment("t", uuid.uuid4(), {p: [1] for p in range(5)}), {})
            for p in range(5):
                store.create_partition_state("t", p, PartitionState(1, 0, [1], epoch))
            # The thread inside sees its changes; the disk does not have them yet.
            assert store.partition_state("t", 4) is not None
            assert _on_disk(path, "t") is None
            # Another thread waits for the batch (the lock), then sees it all on disk.
            other = threading.Thread(target=lambda: seen_by_other_thread.append(
                (store.partition_state("t", 4), _on_disk(path, "t"))))
            other.start()
            other.join(0.2)
            assert other.is_alive()
        other.join(30)
        state, disk = seen_by_other_thread[0]
        assert state is not None and sorted(disk["partitions"]) == ["0", "1", "2", "3", "4"]
        assert sorted(_on_disk(path, "t")["partitions"]) == ["0", "1", "2", "3", "4"]
    finally:
        store.close()
    again = LocalMetadataStore(path)
    try:
        assert again.partition_state("t", 3).leader == 1
    finally:
        again.close()


def test_a_failed_batch_leaves_memory_as_the_files_are(tmp_path):
    path = str(tmp_path / "meta")
    store = LocalMetadataStore(path)
    try:
        epoch = store.elect_controller(1)
        # The batch's write fails (even as root): its temporary file's name is taken by a directory.
        os.mkdir(os.path.join(path, "topics", "t.json.tmp"))
        with pytest.raises(IsADirectoryError):
            with store.batch():
                store.create_topic(TopicAssignment("t", uuid.uuid4(), {0: [1]}), {})
                store.create_partition_state("t", 0, PartitionState(1, 0, [1], epoch))
        assert store.topic("t") is None and store.partition_state("t", 0) is None
    finally:
        store.close()


def test_create_topics_is_answered_once_every_partition_state_is_on_disk():
    with running_broker() as b:
        with Client(b.bootstrap, timeout=30) as client:
            client.create_topics("many", 50, 1)
            disk = _on_disk(os.path.join(b.data_dir, "pylog-cluster"), "many")
        assert disk is not None and len(disk["partitions"]) == 50
