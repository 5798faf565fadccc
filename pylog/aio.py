"""asyncio variants of pylog's Producer and Consumer.

    async with pylog.aio.Producer(bootstrap_servers="127.0.0.1:9092") as p:
        md = await p.send_and_wait("t", b"v")
        fut = await p.send("t", b"w")        # queued; await fut for the ack

    async with pylog.aio.Producer(bootstrap_servers=..., transactional_id="app-1") as p:
        await p.init_transactions()
        async with p.transaction():          # commit on success, abort on an exception
            await p.send("t", b"v")

    async with pylog.aio.Consumer("t", bootstrap_servers=..., group_id="g") as c:
        async for record in c:
            ...

    async with pylog.aio.ShareConsumer("t", bootstrap_servers=..., group_id="workers") as c:
        await c.run(handler)                 # handler: a function or a coroutine function

Both wrap the threaded clients rather than re-implementing the protocol on
the event loop: the producer's per-message path is already native and never
blocks unless the buffer is full or the topic's metadata is unknown (then the
call moves to a thread), and acknowledgements come back as asyncio futures
resolved from the sender thread with call_soon_threadsafe. The consumer runs
every call in one dedicated thread (a Consumer belongs to one thread), so a
long poll never blocks the loop. Names follow aiokafka (send, send_and_wait,
getone, getmany, start/stop) where they mean the same thing.

Thread-safety: use each object from the event loop that created it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import threading

from . import _engine
from .consumer import Consumer as _Consumer
from .producer import Producer as _Producer
from .consumer.share_consumer import ACCEPT, RELEASE, failed_outcome
from .consumer.share_consumer import ShareConsumer as _ShareConsumer
from .producer.delivery_headers import delivery_headers
from .producer.producer import FailedSend

__all__ = ["Consumer", "Producer", "ShareConsumer"]


def _resolve(fut: asyncio.Future, handle) -> None:
    if fut.cancelled():
        return
    exc = handle.exception(0)
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(handle.get(0))


class Producer:
    """asyncio face of pylog.Producer; the same keyword arguments."""

    def __init__(self, bootstrap_servers: str | None = None, **config):
        self._args = (bootstrap_servers, config)
        self._producer: _Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        bootstrap, config = self._args
        # Connecting and the first metadata request block: do them off the loop.
        self._producer = await self._loop.run_in_executor(
            None, functools.partial(_Producer, bootstrap, **config))

    def _future_for(self, handle) -> asyncio.Future:
        fut = self._loop.create_future()
        loop = self._loop
        handle.add_done_callback(lambda h: loop.call_soon_threadsafe(_resolve, fut, h))
        return fut

    async def send(self, topic: str, value=None, key=None, partition=None, timestamp=None,
                   headers=None, *, deliver_at=None, priority=None) -> asyncio.Future:
        """Queue a record; returns a future resolved with its RecordMetadata.
        deliver_at / priority: as pylog.Producer.send."""
        p = self._producer
        if deliver_at is not None or priority is not None:
            headers = delivery_headers(headers, deliver_at, priority)
        if p._txn is not None:
            p._txn.check_can_send()
        try:
            handle = p._append(topic, -1 if partition is None else partition, key, value,
                               timestamp, headers, None)
        except (_engine.NeedMetadata, _engine.BufferFull):
            handle = await self._loop.run_in_executor(None, functools.partial(
                p.send, topic, value, key, partition, timestamp, headers))
            if isinstance(handle, FailedSend):
                # As aiokafka: a topic without metadata within max_block_ms
                # makes send() itself raise, not the ack's future.
                raise handle.error
        return self._future_for(handle)

    async def send_and_wait(self, topic: str, value=None, key=None, partition=None,
                            timestamp=None, headers=None, *, deliver_at=None, priority=None):
        return await (await self.send(topic, value, key, partition, timestamp, headers, deliver_at=deliver_at,
                                      priority=priority))

    async def send_many(self, topic: str, values, keys=None, partition=None):
        """send_many in a thread; returns the list of per-batch RecordMetadata once acked."""
        results = await self._loop.run_in_executor(None, functools.partial(
            self._producer.send_many, topic, values, keys, partition))
        return await self._loop.run_in_executor(None, results.get)

    # Transactions (transactional_id=...): each call may wait on the
    # coordinator or on acknowledgements, so it runs in a thread.

    async def init_transactions(self, timeout: float | None = None) -> None:
        await self._loop.run_in_executor(None, self._producer.init_transactions, timeout)

    async def begin_transaction(self) -> None:
        self._producer.begin_transaction()   # no I/O

    async def send_offsets_to_transaction(self, offsets, group_metadata,
                                          timeout: float | None = None) -> None:
        await self._loop.run_in_executor(None, functools.partial(
            self._producer.send_offsets_to_transaction, offsets, group_metadata, timeout))

    async def commit_transaction(self, timeout: float | None = None) -> None:
        await self._loop.run_in_executor(None, self._producer.commit_transaction, timeout)

    async def abort_transaction(self, timeout: float | None = None) -> None:
        await self._loop.run_in_executor(None, self._producer.abort_transaction, timeout)

    def transaction(self):
        """async with producer.transaction(): begin, then commit on success
        or abort on an exception (as aiokafka's)."""
        return _Transaction(self)

    async def flush(self, timeout: float | None = None) -> int:
        return await self._loop.run_in_executor(None, self._producer.flush, timeout)

    async def stop(self, timeout: float | None = None) -> None:
        if self._producer is not None:
            await self._loop.run_in_executor(None, self._producer.close, timeout)

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()


class _Transaction:
    def __init__(self, producer: Producer):
        self._producer = producer

    async def __aenter__(self):
        await self._producer.begin_transaction()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        if exc_type is None:
            await self._producer.commit_transaction()
        elif not getattr(exc, "fatal", False):
            await self._producer.abort_transaction()


class Consumer:
    """asyncio face of pylog.Consumer; the same arguments. Every call runs
    on the consumer's own thread."""

    def __init__(self, *topics, **config):
        self._args = (topics, config)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pylog-aio-consumer")
        self._consumer: _Consumer | None = None

    async def _call(self, fn, *args, **kw):
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(fn, *args, **kw))

    async def start(self) -> None:
        topics, config = self._args
        self._consumer = await self._call(_Consumer, *topics, **config)

    async def getmany(self, timeout_ms: int = 1000, max_records: int | None = None) -> list:
        return await self._call(self._consumer.poll, timeout_ms / 1000, max_records)

    async def getone(self):
        while True:
            got = await self._call(self._consumer.poll, 1.0, 1)
            if got:
                return got[0]

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        while True:
            for record in await self.getmany():
                yield record

    def __getattr__(self, name):
        """Every other Consumer method (subscribe, assign, seek, commit,
        committed, position, pause, resume, ...) as a coroutine."""
        attr = getattr(self._consumer, name)
        if not callable(attr):
            return attr

        async def call(*args, **kw):
            return await self._call(attr, *args, **kw)
        return call

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._call(self._consumer.close)
        self._pool.shutdown(wait=True)

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()


class ShareConsumer(Consumer):
    """asyncio face of pylog.ShareConsumer; the same arguments. Every call
    (poll, acknowledge, commit_sync, ...) runs on the consumer's own thread,
    as Consumer's; run(handler) calls the handler on the event loop (awaiting
    it when it is a coroutine function) and hands each poll's outcomes to the
    consumer's thread in one call."""

    def __init__(self, *topics, **config):
        super().__init__(*topics, **config)
        self._stopping = threading.Event()

    async def start(self) -> None:
        topics, config = self._args
        self._consumer = await self._call(_ShareConsumer, *topics, **config)

    async def getmany(self, timeout_ms: int = 1000, max_records: int | None = None) -> list:
        """One poll (max.poll.records completed to a log batch's end:
        max_records is not a bound here, as the share consumer's batch_optimized poll)."""
        return await self._call(self._consumer.poll, timeout_ms / 1000)

    async def getone(self):
        raise TypeError("a share consumer hands out whole acquired batches: use getmany() or run()")

    async def run(self, handler, *, max_delivery_count: int | None = None, poll_timeout: float = 0.5) -> None:
        """pylog.ShareConsumer.run on the event loop: return -> ACCEPT, raise
        -> RELEASE (REJECT once delivery_count reached max_delivery_count);
        stop() ends it, releasing what was not handled and committing."""
        c = self._consumer
        if max_delivery_count is not None and max_delivery_count < 1:
            raise ValueError("max_delivery_count must be at least 1")
        try:
            while not self._stopping.is_set():
                records = await self._call(c._next_records, poll_timeout)
                outcomes = []
                for record in records:
                    if self._stopping.is_set():
                        outcomes.append(RELEASE)
                        continue
                    try:
                        result = handler(record)
                        if inspect.isawaitable(result):
                            await result
                        outcomes.append(ACCEPT)
                    except Exception as e:  # noqa: BLE001 - the handler's failure is the record's outcome
                        outcomes.append(failed_outcome(record, e, max_delivery_count))
                if records:
                    await self._call(c._acknowledge_all, records, outcomes)
        finally:
            self._stopping.clear()
        await self._call(c.commit_sync)

    def stop_running(self) -> None:
        """End run() (from the handler, the loop or any thread)."""
        self._stopping.set()
        self._consumer.stop()
