"""A data directory's own producer-id blocks (`pylog-producer-ids`), the one
allocator the lone broker's fallback and the embedded store share.

The file holds the first id not yet handed out; a block is reserved on disk
(written and fsynced) before any id of it is used, so no id is reused after a
restart or a crash, whichever of the two used the directory last. A broker in
a cluster takes its blocks from the cluster instead (Broker.allocate_producer_id)
and, when lone, moves this file past them too.

Threads: any; a caller serialises its own calls (the broker's loop, the
embedded store's lock). Two processes never share a directory (its .lock).
"""
from __future__ import annotations

import os

from ..log.checkpoint import atomic_write

PRODUCER_ID_FILE = "pylog-producer-ids"
PRODUCER_ID_BLOCK = 1000


class ProducerIdBlocks:
    """Ids from one data directory's blocks (see the module docstring).

    Threads: any, one call at a time (the caller serialises: the broker's
    loop, the embedded store's lock); no lock of its own.
    """

    def __init__(self, data_dir: str, block: int = PRODUCER_ID_BLOCK):
        self.path = os.path.join(data_dir, PRODUCER_ID_FILE)
        self.block = block
        self.next = self.limit = 0

    def next_id(self) -> int:
        if self.next >= self.limit:
            try:
                with open(self.path) as f:
                    start = int(f.read().strip() or 0)
            except FileNotFoundError:
                start = 0
            atomic_write(self.path, str(start + self.block).encode())
            self.next, self.limit = start, start + self.block
        pid = self.next
        self.next += 1
        return pid
