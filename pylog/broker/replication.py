"""ReplicaManager: what the controller drives on this broker (KAFKA-NOTES §4).

It applies LeaderAndIsr (become leader or follower per partition, with
controller-epoch and leader-epoch fencing) and StopReplica, keeps the
follower fetchers (replica_fetcher.py) in step, and runs the leader's ISR
maintenance: every replica.lag.time.max.ms / 2 it looks for ISR followers that
have not caught up within replica.lag.time.max.ms, and whenever a follower
catches up it may rejoin. The leader never changes the ISR by itself: it asks
the controller with AlterPartition v0 and applies the ISR the controller
answers (Kafka's AlterPartition path, 2.7+), one request in flight per
partition (Partition.pending_isr).

Invariants: controller_epoch is the highest epoch seen in any accepted
controller request and never decreases; a partition is led here exactly when
the last accepted LeaderAndIsr for it named this broker, and is then in no
fetcher.

Threads: not thread-safe; runs on the broker's event loop only, whether
the controller's requests come over the wire or from the Controller in this
process (InProcessBrokerChannel hands them to the loop). The file work a
LeaderAndIsr needs (new replicas' logs, the leader-epoch-checkpoint of each
new leader epoch: prepare_leader_and_isr) runs on the LogManager's file
thread before the request is applied, touching no state of this class; a
replica it makes leader is applied only once no truncation of it (the
fetchers', also on that thread) is running.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..errors import LogClosedError, PylogError, code_for
from ..log.leader_epoch import LeaderEpochCache
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from ..protocol.pylog_tags import reassignment_throttle_of, topic_configs_of
from .replica_fetcher import LeaderConnection, ReplicaFetcherManager

log = logging.getLogger("pylog.broker.replication")

# How long a controller request naming a broker epoch newer than this broker
# knows waits for its registration answer (sent before the controller saw it).
BROKER_EPOCH_WAIT_S = 10.0
OFFSETS_TOPIC = "__consumer_offsets"
TRANSACTION_TOPIC = "__transaction_state"
SHARE_STATE_TOPIC = "__share_group_state"
ALTER_PARTITION_VERSION = 0
ALTER_PARTITION_TIMEOUT_S = 10.0


class ReplicaManager:
    """Threads: the broker's event loop only (see the module docstring); the
    file work it starts runs on the LogManager's threads and touches none
    of its state.
    """

    def __init__(self, broker, metadata_cache):
        self.broker = broker
        self.broker_id = broker.broker_id
        self.logs = broker.log_manager
        self.cache = metadata_cache
        # The controller whose requests were last admitted, and its epoch.
        self.controller_epoch = -1
        self.controller_id: int | None = None
        self.lag_time_max_ms = broker.config.get("replica.lag.time.max.ms")
        self.fetchers = ReplicaFetcherManager(broker, metadata_cache)
        self._tasks: set = set()
        self._isr_task = None

    def start(self):
        self._isr_task = asyncio.ensure_future(self._isr_check_loop())

    async def stop(self):
        if self._isr_task is not None:
            self._isr_task.cancel()
        tasks = list(self._tasks) + ([self._isr_task] if self._isr_task is not None else [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.fetchers.stop()

    # ---- fencing of controller requests (LeaderAndIsr, UpdateMetadata, StopReplica) ----

    def admit(self, req):
        """0 when this controller request may be applied, else the error code
        to refuse it with: STALE_BROKER_EPOCH when it is not meant for this
        life of this broker, STALE_CONTROLLER_EPOCH when its controller is not
        the current one. An int at once when the answer is known here, else
        an awaitable of it (the broker's registration is catching up, or a new
        controller epoch is checked against the metadata store). A refused
        request is applied nowhere, so a forged one changes nothing."""
        code = self._admit_now(req)
        return self._admit_later(req) if code is None else code

    def _admit_now(self, req):
        mine = self.broker.broker_epoch()
        if req.broker_epoch < 0:
            # Kafka accepts broker_epoch -1 from controllers older than KIP-380;
            # every version served here carries the field and pylog's controller
            # always fills it, so -1 is refused like any other stale epoch (also
            # while this broker is not registered and its own epoch is -1).
            return Errors.STALE_BROKER_EPOCH
        if req.broker_epoch != mine:
            # A newer one may be ours already, the registration answer not yet
            # read (Kafka's "rare scenario"): that is waited for.
            return Errors.STALE_BROKER_EPOCH if req.broker_epoch < mine else None
        if req.controller_epoch < self.controller_epoch:
            return Errors.STALE_CONTROLLER_EPOCH
        if req.controller_epoch == self.controller_epoch:
            # One epoch is won by one controller: another id with it is not one.
            return 0 if req.controller_id == self.controller_id else Errors.STALE_CONTROLLER_EPOCH
        return None   # a controller epoch never seen: confirmed first

    async def _admit_later(self, req) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BROKER_EPOCH_WAIT_S
        while req.broker_epoch > self.broker.broker_epoch() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if req.broker_epoch != self.broker.broker_epoch():
            log.warning("broker %d: refusing %s from controller %d: broker epoch %d is not this broker's %d",
                        self.broker_id, type(req).__name__, req.controller_id, req.broker_epoch,
                        self.broker.broker_epoch())
            return Errors.STALE_BROKER_EPOCH
        code = self._admit_now(req)
        if code is not None:
            return code
        if not await self._is_current_controller(req.controller_id, req.controller_epoch):
            log.warning("broker %d: refusing %s: controller %d with epoch %d is not the current controller",
                        self.broker_id, type(req).__name__, req.controller_id, req.controller_epoch)
            return Errors.STALE_CONTROLLER_EPOCH
        code = self._admit_now(req)   # another request may have moved the epoch meanwhile
        if code is None:
            self.controller_epoch, self.controller_id = req.controller_epoch, req.controller_id
            log.info("broker %d: controller %d, epoch %d", self.broker_id, req.controller_id, req.controller_epoch)
            code = 0
        return code

    async def _is_current_controller(self, controller_id: int, controller_epoch: int) -> bool:
        """Whether the cluster's metadata names this controller with this epoch:
        the store when this broker has one (ZooKeeper, or the embedded
        controller's own), else the embedded controller itself: the configured
        pylog.controller.id, with the epoch it answers now (pylog's tagged
        field on its heartbeat answer)."""
        store = self.broker.metadata_store
        if store is None:
            client = self.broker.controller_client
            if controller_id != self.broker.config.get("pylog.controller.id") or client is None:
                return False
            # The registration answer, or a heartbeat answer that came after
            # this request, carries the controller's epoch (the client's thread
            # heartbeats at once when poked).
            if client.controller_epoch == controller_epoch:
                return True
            loop = asyncio.get_running_loop()
            deadline = loop.time() + BROKER_EPOCH_WAIT_S
            seen = client.epoch_answers
            client.poke()
            while client.epoch_answers == seen:
                if loop.time() >= deadline:
                    log.warning("broker %d: the controller has not told its epoch", self.broker_id)
                    return False
                await asyncio.sleep(0.02)
            return client.controller_epoch == controller_epoch
        try:
            current = await asyncio.get_running_loop().run_in_executor(None, store.current_controller)
        except Exception as e:  # the store unreachable: not confirmed, the controller sends again on failover
            log.warning("broker %d: cannot read the current controller: %s", self.broker_id, e)
            return False
        return current == (controller_id, controller_epoch)

    # ---- LeaderAndIsr ----

    def replicas_to_create(self, req) -> list:
        """The replicas a LeaderAndIsr assigns here that have no log yet:
        (topic, index, topic_id, config overrides). An offline one (its log
        could not be opened) is tried again, off the loop too."""
        out = []
        for ts in req.topic_states:
            for ps in ts.partition_states:
                key = (ts.topic_name, ps.partition_index)
                if self.broker_id in ps.replicas and key not in self.logs.partitions:
                    out.append((ts.topic_name, ps.partition_index, getattr(ts, "topic_id", None),
                                topic_configs_of(ts)))
        return out

    def prepare_leader_and_isr(self, req):
        """The file work a LeaderAndIsr needs before it is applied, as a
        coroutine run off the loop (True when it may then be applied; False:
        the broker is stopping), or None when there is none: the new
        replicas' logs (create_replicas) and the leader-epoch-checkpoint of
        each replica that becomes leader in a new epoch (write_leader_epochs;
        Kafka writes it before the leader appends under that epoch); also the
        end of any truncation of a replica it makes leader."""
        new = self.replicas_to_create(req)
        ids = self.logs.topic_ids_to_write(_topic_ids_of(req))
        if not new and not ids and not self.leader_epochs_to_write(req) and not self._truncating_leaders(req):
            return None
        return self._prepare(req, new, ids)

    async def _prepare(self, req, new, ids) -> bool:
        if new and not await self.create_replicas(new):
            return False
        if ids and not await self.write_topic_ids(ids):
            return False
        # A replica this request makes leader must not be mid-truncation (a
        # follower's, off the loop) when it starts taking appends: wait until
        # none is, with nothing awaited between that check and the apply.
        while True:
            for p in self._truncating_leaders(req):
                await p.truncation_done()
            await self.write_leader_epochs(self.leader_epochs_to_write(req))
            if not self._truncating_leaders(req):
                return True

    def _truncating_leaders(self, req) -> list:
        """The replicas here that req makes leader and that are being truncated."""
        out = []
        for ts in req.topic_states:
            for ps in ts.partition_states:
                if ps.leader == self.broker_id:
                    p = self.logs.partitions.get((ts.topic_name, ps.partition_index))
                    if p is not None and p.truncating:
                        out.append(p)
        return out

    def leader_epochs_to_write(self, req) -> list:
        """(partition, entries) for each replica here that this LeaderAndIsr
        makes leader in an epoch its cache does not hold (Partition.make_leader
        will assign it at its log end offset)."""
        out = []
        for ts in req.topic_states:
            for ps in ts.partition_states:
                if ps.leader != self.broker_id or self.broker_id not in ps.replicas:
                    continue
                p = self.logs.partitions.get((ts.topic_name, ps.partition_index))
                if p is None or ps.leader_epoch < p.leader_epoch or \
                        p.epoch_cache.latest_epoch() >= ps.leader_epoch:
                    continue
                entries = p.epoch_cache.entries_if_assigned(ps.leader_epoch, p.log.log_end_offset)
                if entries is not None:
                    out.append((p, entries))
        return out

    async def write_topic_ids(self, jobs) -> bool:
        """Write the partition.metadata of open replicas that have none yet
        (topic ids from a LeaderAndIsr v5) on the LogManager's file thread.
        False when the broker is stopping."""
        try:
            done = await asyncio.get_running_loop().run_in_executor(
                self.logs.file_executor, self.logs.write_topic_ids, jobs)
        except LogClosedError:
            return False
        for name, index, _path, tid in done:
            if (name, index) not in self.logs.topic_ids_on_disk and (name, index) in self.logs.partitions:
                self.logs.note_topic_id(name, index, tid)
        return True

    async def write_leader_epochs(self, jobs) -> None:
        """Write those files on the LogManager's file thread; make_leader then
        finds each as it would write it and writes nothing on the loop. When
        this fails, or the log end moved meanwhile (a follower's last fetch),
        make_leader writes the file itself."""
        if not jobs:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.logs.file_executor, _write_epoch_files, [(p.epoch_cache.path, e) for p, e in jobs])
        except (OSError, LogClosedError) as e:
            log.warning("broker %d: writing leader epoch checkpoints off the loop failed: %s", self.broker_id, e)
            return
        for p, entries in jobs:
            p.epoch_cache.note_written(entries)

    async def create_replicas(self, specs) -> bool:
        """Open new replicas' logs on the LogManager's file thread (each a few
        milliseconds of file work: hundreds would stall every connection),
        register them on the loop, write the topics file off it. False when
        the broker is stopping (nothing opened or registered)."""
        loop = asyncio.get_running_loop()
        try:
            opened = await loop.run_in_executor(self.logs.file_executor, self.logs.open_replicas, specs)
        except LogClosedError:
            return False
        if self.broker.stopping:
            self.logs.close_unregistered(opened)
            return False
        self.logs.register_replicas(specs, opened)
        try:
            await loop.run_in_executor(self.logs.file_executor, self.logs.write_topics, *self.logs.topics_snapshot())
        except (OSError, LogClosedError) as e:
            log.error("broker %d: writing the topics file failed: %s", self.broker_id, e)
        return True

    def become_leader_or_follower(self, req) -> list[tuple[str, int, int]]:
        """Apply a LeaderAndIsr request whose controller epoch was accepted;
        (topic, partition, error code) for each partition state."""
        self.cache.note_live_leaders(req.live_leaders)
        now_ms = int(time.time() * 1000)
        out = []
        for ts in req.topic_states:
            for ps in ts.partition_states:
                topic = ts.topic_name
                try:
                    code = self._apply_partition_state(topic, ts, ps, now_ms)
                except PylogError as e:
                    log.warning("LeaderAndIsr for %s-%d failed: %s", topic, ps.partition_index, e)
                    code = code_for(e)
                except OSError as e:
                    # Its log cannot be opened here: the replica is offline
                    # (LogManager keeps it so), as for a failed Kafka log dir.
                    log.error("LeaderAndIsr for %s-%d: the replica's log cannot be opened: %s", topic,
                              ps.partition_index, e)
                    code = Errors.KAFKA_STORAGE_ERROR
                out.append((topic, ps.partition_index, code))
        return out

    def _apply_partition_state(self, topic, ts, ps, now_ms) -> int:
        if self.broker_id not in ps.replicas:
            return Errors.UNKNOWN_TOPIC_OR_PARTITION
        tid = getattr(ts, "topic_id", None)
        on_disk = self.logs.topic_ids_on_disk.get((topic, ps.partition_index))
        if tid is not None and tid.int != 0 and on_disk is not None and on_disk != tid:
            # This directory holds another incarnation of the topic (deleted
            # while this broker was away): Kafka leaves it alone and answers so.
            log.error("broker %d: LeaderAndIsr for %s-%d names topic id %s, but its log belongs to %s",
                      self.broker_id, topic, ps.partition_index, tid, on_disk)
            return Errors.INCONSISTENT_TOPIC_ID
        configs = topic_configs_of(ts)
        if configs is not None:
            self.logs.sync_topic_configs(topic, configs)
        # Opened by create_replicas, off the loop; StorageError when it could
        # not be (offline: KAFKA_STORAGE_ERROR, as a failed Kafka log dir).
        p = self.logs.get_partition(topic, ps.partition_index)
        if ps.leader_epoch < p.leader_epoch:
            log.warning("broker %d: ignoring LeaderAndIsr for %s-%d: leader epoch %d is older than %d",
                        self.broker_id, topic, ps.partition_index, ps.leader_epoch, p.leader_epoch)
            return Errors.FENCED_LEADER_EPOCH
        p.controller_managed = True
        p.controller_epoch = ps.controller_epoch
        p.on_isr_change_needed = self._isr_change_needed
        key = (topic, ps.partition_index)
        try:
            return self._become(p, topic, ps, key, now_ms)
        finally:
            if topic == OFFSETS_TOPIC:
                self._offsets_leadership(ps.partition_index, p.is_leader)
            elif topic == TRANSACTION_TOPIC:
                self._transaction_leadership(ps.partition_index, p.is_leader)
            elif topic == SHARE_STATE_TOPIC:
                self._share_state_leadership(ps.partition_index, p.is_leader)
            elif not p.is_leader and getattr(self.broker, "share", None) is not None:
                # Its share-partitions go: the next leader reads them back from the share coordinator.
                self.broker.share.manager.on_resign(topic, ps.partition_index)

    def _offsets_leadership(self, index, leader: bool):
        """The group coordinator follows the leadership of __consumer_offsets
        partitions: loads a partition's groups as leader, forgets them otherwise."""
        self._coordinator_follows(self.broker.groups, OFFSETS_TOPIC, index, leader)

    def _transaction_leadership(self, index, leader: bool):
        """The transaction coordinator follows __transaction_state's the same way."""
        self._coordinator_follows(getattr(self.broker, "transactions", None), TRANSACTION_TOPIC, index, leader)

    def _share_state_leadership(self, index, leader: bool):
        """The share coordinator follows __share_group_state's the same way."""
        share = getattr(self.broker, "share", None)
        self._coordinator_follows(share.coordinator if share is not None else None, SHARE_STATE_TOPIC, index, leader)

    def _coordinator_follows(self, coordinator, topic, index, leader: bool):
        if coordinator is None:
            return
        try:
            if leader:
                coordinator.on_become_leader(index)
            else:
                coordinator.on_resign(index)
        except Exception:  # the replica's state is applied whatever the coordinator makes of it
            log.exception("broker %d: the coordinator failed to follow %s-%d", self.broker_id, topic, index)

    def _become(self, p, topic, ps, key, now_ms) -> int:
        if ps.leader == self.broker_id:
            self.fetchers.remove(key)   # its throttle too
            if p.make_leader(ps, now_ms):
                log.info("broker %d: leader of %s-%d, epoch %d, isr %s, LEO %d, HW %d", self.broker_id, topic,
                         ps.partition_index, ps.leader_epoch, list(ps.isr), p.log_end_offset, p.high_watermark)
        else:
            changed = p.make_follower(ps)
            # An adding replica of a throttled reassignment copies at its rate.
            self.fetchers.set_throttle(key, reassignment_throttle_of(ps)
                                       if self.broker_id in (ps.adding_replicas or ()) else None)
            if ps.leader < 0:
                self.fetchers.remove(key)
            else:
                self.fetchers.add(p, truncate=changed)
            if changed:
                log.info("broker %d: follower of %s-%d, leader %d epoch %d", self.broker_id, topic,
                         ps.partition_index, ps.leader, ps.leader_epoch)
        return 0

    def apply_topic_configs(self, req) -> None:
        """The config overrides an UpdateMetadata carries, for the topics with
        replicas here (the others' are kept in the MetadataCache only)."""
        for ts in req.topic_states:
            configs = topic_configs_of(ts)
            if configs is None:
                continue
            try:
                self.logs.sync_topic_configs(ts.topic_name, configs)
            except PylogError as e:
                log.warning("broker %d: config overrides of %s not applied: %s", self.broker_id, ts.topic_name, e)

    # ---- StopReplica ----

    def stop_replicas(self, req):
        """Apply a StopReplica whose controller epoch was accepted: the
        replicas stop (and deleted ones leave the LogManager) now, on the
        loop, before any later request is applied; returns a coroutine of the
        (topic, partition, error code) of each, which ends once the deleted
        ones' file work, on the LogManager's file thread, is durable (the
        controller counts a deletion done then), while the loop serves
        everything else."""
        out = []
        deletions = []
        for t in req.topics:
            for idx in t.partition_indexes:
                key = (t.name, idx)
                self.fetchers.remove(key)
                code = 0
                p = self.logs.partitions.get(key)
                if t.name == OFFSETS_TOPIC:
                    self._offsets_leadership(idx, False)
                elif t.name == TRANSACTION_TOPIC:
                    self._transaction_leadership(idx, False)
                elif t.name == SHARE_STATE_TOPIC:
                    self._share_state_leadership(idx, False)
                try:
                    if p is not None:
                        p.stop()
                        if req.delete_partitions:
                            deletions.append((len(out), self.logs.delete_partition(t.name, idx)))
                except PylogError as e:
                    code = code_for(e)
                out.append((t.name, idx, code))
        return self._deleted(out, deletions)

    async def _deleted(self, out, deletions) -> list[tuple[str, int, int]]:
        for i, done in deletions:
            try:
                await asyncio.wrap_future(done)
            except Exception as e:  # noqa: BLE001 -- that replica's answer carries it
                log.error("broker %d: deleting the replica %s-%d failed: %s", self.broker_id, out[i][0],
                          out[i][1], e)
                out[i] = (out[i][0], out[i][1], code_for(e) if isinstance(e, PylogError)
                          else Errors.KAFKA_STORAGE_ERROR)
        return out

    # ---- ISR changes through the controller (AlterPartition) ----

    async def _isr_check_loop(self):
        interval = max(self.lag_time_max_ms / 2000.0, 0.05)
        while True:
            await asyncio.sleep(interval)
            now_ms = int(time.time() * 1000)
            for p in list(self.logs.partitions.values()):
                if p.controller_managed and p.is_leader:
                    try:
                        p.maybe_shrink_isr(self.lag_time_max_ms, now_ms)
                    except Exception:
                        log.exception("ISR check of %s failed", p)

    def _isr_change_needed(self, p, new_isr):
        t = asyncio.ensure_future(self._alter_partition(p, list(new_isr), p.leader_epoch, p.partition_epoch))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _alter_partition(self, p, new_isr, leader_epoch, partition_epoch):
        """Ask the controller for new_isr; apply what it answers."""
        key = (p.topic, p.index)
        ctl = self.cache.controller()
        if ctl is None:
            log.warning("broker %d: %s-%d needs ISR %s but no controller is known", self.broker_id,
                        p.topic, p.index, new_isr)
            p.pending_isr = None
            return
        Q = m.AlterPartitionRequest
        # The controller takes it only with this broker's current epoch.
        part = Q.PartitionData(partition_index=p.index, leader_epoch=leader_epoch, new_isr=new_isr,
                               leader_recovery_state=0, partition_epoch=partition_epoch)
        req = Q(broker_id=self.broker_id, broker_epoch=self.broker.broker_epoch(),
                topics=[Q.TopicData(topic_name=p.topic, partitions=[part])])
        log.info("broker %d: asking controller %d to change the ISR of %s-%d from %s to %s", self.broker_id,
                 ctl.id, p.topic, p.index, p.isr, new_isr)
        conn = LeaderConnection(ctl.host, ctl.port, f"broker-{self.broker_id}-alter-partition",
                                self.broker.config.inter_broker_tls(), self.broker.inter_broker_sasl)
        try:
            resp = await conn.request(req, ALTER_PARTITION_VERSION, timeout=ALTER_PARTITION_TIMEOUT_S)
        except (OSError, EOFError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            log.warning("broker %d: AlterPartition for %s-%d failed: %s", self.broker_id, p.topic, p.index, e)
            if p.pending_isr == new_isr:
                p.pending_isr = None  # asked again at the next ISR check
            return
        finally:
            conn.close()
        if self.logs.partitions.get(key) is not p:
            return
        if resp.error_code:
            log.warning("broker %d: AlterPartition refused: error %d", self.broker_id, resp.error_code)
        for t in resp.topics:
            for r in t.partitions:
                if t.topic_name != p.topic or r.partition_index != p.index:
                    continue
                if r.error_code == 0 and r.leader_id == self.broker_id and r.leader_epoch == p.leader_epoch \
                        and r.partition_epoch >= p.partition_epoch:
                    log.info("broker %d: ISR of %s-%d is now %s (partition epoch %d)", self.broker_id,
                             p.topic, p.index, list(r.isr), r.partition_epoch)
                    p.apply_isr(r.isr, r.partition_epoch)
                    return
                log.warning("broker %d: AlterPartition for %s-%d: error %d", self.broker_id, p.topic, p.index,
                            r.error_code)
        if p.pending_isr == new_isr:
            p.pending_isr = None


def _topic_ids_of(req) -> list:
    """(topic, index, topic id) of each partition state of a LeaderAndIsr
    v5+ (none before v5, whose topic states carry no id)."""
    out = []
    for ts in req.topic_states:
        tid = getattr(ts, "topic_id", None)
        if tid is not None and tid.int != 0:
            out.extend((ts.topic_name, ps.partition_index, tid) for ps in ts.partition_states)
    return out


def leader_and_isr_response(req, error_code: int, results, version: int):
    """The LeaderAndIsrResponse for req: results are (topic, index, error
    code); v5+ groups them by topic id (Kafka's LeaderAndIsrResponse), before
    they are a flat list naming each topic."""
    R = m.LeaderAndIsrResponse
    if version < 5:
        return R(error_code=error_code, partition_errors=[
            R.LeaderAndIsrPartitionError(topic_name=t, partition_index=i, error_code=c) for t, i, c in results])
    ids = {ts.topic_name: ts.topic_id for ts in req.topic_states}
    by_topic: dict[str, list] = {}
    for t, i, c in results:
        by_topic.setdefault(t, []).append(R.LeaderAndIsrPartitionError(partition_index=i, error_code=c))
    return R(error_code=error_code, topics=[R.LeaderAndIsrTopicError(topic_id=ids[t], partition_errors=errs)
                                            for t, errs in by_topic.items()])


def _write_epoch_files(jobs):
    # On the LogManager's file thread: files only, no cache.
    for path, entries in jobs:
        LeaderEpochCache.write_file(path, entries)
