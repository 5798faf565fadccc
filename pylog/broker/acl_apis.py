"""CreateAcls (30), DescribeAcls (29), DeleteAcls (31), and keeping this
broker's authorizer in step with the ACLs in the cluster's metadata store.

The store holds the ACLs (ZooKeeper: Kafka's /kafka-acl trees and change
notifications; the embedded controller: its cluster.json). A broker that holds
the store writes there and updates its own authorizer; the store's watch
brings other brokers' changes. A broker of the embedded controller without
the store forwards Create/Delete to the controller and polls it for the whole
set (DescribeAcls), as it holds no copy of the store.

Without authorizer.class.name the three APIs answer SECURITY_DISABLED, as
Kafka's do. Create/Delete need ALTER on the cluster, Describe DESCRIBE.

Threads: handlers on the broker's loop; store calls on worker threads; store
watch callbacks hop to the loop before touching the authorizer.
"""
from __future__ import annotations

import asyncio
import logging
import os

from ..errors import PylogError
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from . import api_versions as av
from .authorizer import (ALTER, ANY, DESCRIBE, AclBinding, AclFilter, from_stored, to_stored, validate_binding,
                         validate_filter)

log = logging.getLogger("pylog.broker")

NO_AUTHORIZER = "No Authorizer is configured."
POLL_S = 2.0   # how often a broker without the store asks the controller for the ACLs


def _describe_all():
    # built on use: message classes are built lazily (bench H's start-up)
    return m.DescribeAclsRequest(resource_type_filter=ANY, pattern_type_filter=ANY, operation=ANY,
                                 permission_type=ANY)


def _bindings_of(r) -> list[AclBinding]:
    if r.error_code:
        raise PylogError(f"DescribeAcls refused: {r.error_message}")
    return [AclBinding(res.resource_type, res.resource_name, res.pattern_type, a.principal, a.host, a.operation,
                       a.permission_type) for res in r.resources for a in res.acls]


class AclApis:
    def __init__(self, broker):
        self.broker = broker

    def table(self) -> dict:
        return {av.DESCRIBE_ACLS: self.describe_acls, av.CREATE_ACLS: self.create_acls,
                av.DELETE_ACLS: self.delete_acls}

    # ---- keeping the authorizer in step ----

    async def preload(self) -> None:
        """The ACLs loaded before the listeners open, as Kafka serves no
        request before its authorizer's first load: read from ZooKeeper, the
        embedded controller's files, or the controller broker; start() then
        follows the store itself."""
        az = self.broker.authorizer
        if az is None:
            return
        try:
            bindings = await asyncio.get_running_loop().run_in_executor(None, self._read_before_start)
        except Exception as e:  # noqa: BLE001 - start() loads them once the store is there
            log.warning("broker %d: the ACLs could not be read before serving: %s", self.broker.broker_id, e)
            return
        az.replace(bindings)

    def _read_before_start(self) -> list[AclBinding]:
        cfg = self.broker.config
        if cfg.get("zookeeper.connect"):
            from ..cluster.zk_store import ZkMetadataStore
            with ZkMetadataStore(cfg.get("zookeeper.connect"),
                                 session_timeout_ms=cfg.get("zookeeper.session.timeout.ms")) as store:
                table = store.acls()
        elif cfg.get("pylog.controller.id") not in (None, self.broker.broker_id):
            from ..client.wire import Connection
            host, _, port = (cfg.get("pylog.controller.listener") or "").rpartition(":")
            with Connection(host, int(port), client_id="pylog-acls", timeout=10,
                            ssl_context=cfg.inter_broker_tls(), sasl=self.broker.inter_broker_sasl) as c:
                return _bindings_of(c.request(_describe_all(), api_version=3))
        else:
            from ..cluster.local_store import read_acls
            from .broker import CLUSTER_DIR   # here: broker imports this module
            table = read_acls(os.path.join(self.broker.data_dir, CLUSTER_DIR))
        return [b for resource, entries in table.items() for b in from_stored(resource, entries)]

    async def start(self) -> None:
        """Load every ACL before serving decisions on them; then follow changes."""
        az, store = self.broker.authorizer, self.broker.metadata_store
        if az is None:
            return
        loop = asyncio.get_running_loop()
        if store is None:
            self.broker._tasks.append(asyncio.ensure_future(self._poll_controller()))
            return

        pending: dict = {}

        def apply():
            changed = dict(pending)
            pending.clear()
            if changed:
                az.set_resources(changed)

        def on_change(resource):
            # The watch's thread reads; the loop applies whatever has arrived
            # by then in one index rebuild (a burst of notifications, one rebuild).
            pending[resource] = store.acls_of(resource)
            loop.call_soon_threadsafe(apply)
        # Watch first, then load: a change in between is applied twice, never missed.
        await loop.run_in_executor(None, store.watch_acls, on_change)
        table = await loop.run_in_executor(None, store.acls)
        az.replace(b for resource, entries in table.items() for b in from_stored(resource, entries))

    async def _poll_controller(self):
        from .handlers import _forward   # a broker's own read, not a client's request: no refusal answer
        az = self.broker.authorizer
        loop = asyncio.get_running_loop()
        while True:
            ep = self.broker.metadata_cache.controller()
            if ep is not None:
                try:
                    r = await loop.run_in_executor(None, _forward, ep, _describe_all(), 3,
                                                   self.broker.config.inter_broker_tls(),
                                                   self.broker.inter_broker_sasl)
                    if r.error_code == 0:
                        az.replace(_bindings_of(r))
                    else:
                        log.warning("the controller refused this broker's DescribeAcls: %s", r.error_message)
                except (OSError, PylogError) as e:
                    log.warning("cannot read the ACLs from the controller: %s", e)
            await asyncio.sleep(POLL_S)

    def _admitted(self, header, req, refuse_all):
        """None when this broker changes the ACLs itself; else the answer:
        SECURITY_DISABLED without an authorizer, CLUSTER_AUTHORIZATION_FAILED
        without ALTER on the cluster, or the controller's (forwarded there
        from a broker without the store)."""
        az = self.broker.authorizer
        if az is None:
            return refuse_all(Errors.SECURITY_DISABLED, NO_AUTHORIZER)
        if not az.allows_cluster(header, ALTER):
            return refuse_all(Errors.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.")
        if self.broker.metadata_store is None:
            from .handlers import forward_to_controller
            return forward_to_controller(self.broker, req, header.request_api_version,
                                         lambda msg: refuse_all(Errors.NOT_CONTROLLER, msg))
        return None

    def _change(self, changes: dict) -> tuple[dict, dict]:
        """On a worker thread, in one store batch: {resource: (add, remove)}
        applied; ({resource: entries after}, {resource: why it failed})."""
        store = self.broker.metadata_store
        done, failed = {}, {}
        with store.batch():
            for resource, (add, remove) in changes.items():
                try:
                    done[resource] = store.change_acls(resource, add, remove)
                except Exception as e:  # noqa: BLE001 - this resource fails; the others go on
                    log.warning("changing the ACLs of %s failed: %s", resource, e)
                    failed[resource] = str(e)
        return done, failed

    # ---- DescribeAcls (29) ----

    def describe_acls(self, header, req):
        R = m.DescribeAclsResponse
        az = self.broker.authorizer

        def refuse(code, msg):
            return R(throttle_time_ms=0, error_code=code, error_message=msg, resources=[])
        if az is None:
            return refuse(Errors.SECURITY_DISABLED, NO_AUTHORIZER)
        if not az.allows_cluster(header, DESCRIBE):
            return refuse(Errors.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.")
        f = AclFilter(req.resource_type_filter, req.resource_name_filter, req.pattern_type_filter,
                      req.principal_filter, req.host_filter, req.operation, req.permission_type)
        why = validate_filter(f)
        if why:
            return refuse(Errors.INVALID_REQUEST, why)
        grouped: dict[tuple, list] = {}
        for b in az.describe(f):
            grouped.setdefault((b.resource_type, b.name, b.pattern_type), []).append(
                R.AclDescription(principal=b.principal, host=b.host, operation=b.operation,
                                 permission_type=b.permission))
        return R(throttle_time_ms=0, error_code=0, error_message=None, resources=[
            R.DescribeAclsResource(resource_type=t, resource_name=n, pattern_type=p, acls=acls)
            for (t, n, p), acls in grouped.items()])

    # ---- CreateAcls (30) ----

    def create_acls(self, header, req):
        R = m.CreateAclsResponse
        az = self.broker.authorizer
        answer = self._admitted(header, req, lambda code, msg: R(throttle_time_ms=0, results=[
            R.AclCreationResult(error_code=code, error_message=msg) for _ in req.creations]))
        if answer is not None:
            return answer
        results: list = [None] * len(req.creations)
        by_resource: dict[tuple, list] = {}
        for i, c in enumerate(req.creations):
            b = AclBinding(c.resource_type, c.resource_name, c.resource_pattern_type, c.principal, c.host,
                           c.operation, c.permission_type)
            why = validate_binding(b)
            if why:
                results[i] = R.AclCreationResult(error_code=Errors.INVALID_REQUEST, error_message=why)
                continue
            resource, entry = to_stored(b)
            by_resource.setdefault(resource, []).append((i, entry))

        async def run():
            done, failed = await asyncio.get_running_loop().run_in_executor(None, self._change, {
                resource: ([e for _, e in items], []) for resource, items in by_resource.items()})
            az.set_resources(done)
            for resource, items in by_resource.items():
                err = failed.get(resource)
                for i, _ in items:
                    results[i] = R.AclCreationResult(error_code=Errors.UNKNOWN_SERVER_ERROR if err else 0,
                                                     error_message=err and f"the ACLs cannot be stored: {err}")
            return R(throttle_time_ms=0, results=results)
        return run()

    # ---- DeleteAcls (31) ----

    def delete_acls(self, header, req):
        R = m.DeleteAclsResponse
        az = self.broker.authorizer
        answer = self._admitted(header, req, lambda code, msg: R(throttle_time_ms=0, filter_results=[
            R.DeleteAclsFilterResult(error_code=code, error_message=msg, matching_acls=[]) for _ in req.filters]))
        if answer is not None:
            return answer
        filters = []
        for f in req.filters:
            af = AclFilter(f.resource_type_filter, f.resource_name_filter, f.pattern_type_filter, f.principal_filter,
                           f.host_filter, f.operation, f.permission_type)
            filters.append((af, validate_filter(af)))

        async def run():
            loop = asyncio.get_running_loop()
            # The bindings each filter removes, from the set as it is now
            # (Kafka's AclControlManager matches every filter against the same state).
            matched = [[] if why else az.describe(af) for af, why in filters]
            by_resource: dict[tuple, list] = {}
            for bs in matched:
                for b in bs:
                    resource, entry = to_stored(b)
                    if entry not in by_resource.setdefault(resource, []):
                        by_resource[resource].append(entry)
            done, failed = await loop.run_in_executor(None, self._change, {
                resource: ([], entries) for resource, entries in by_resource.items()})
            az.set_resources(done)
            out = []
            for (af, why), bs in zip(filters, matched):
                if why:
                    out.append(R.DeleteAclsFilterResult(error_code=Errors.INVALID_REQUEST, error_message=why,
                                                        matching_acls=[]))
                    continue
                acls = []
                for b in bs:
                    err = failed.get(to_stored(b)[0])
                    acls.append(R.DeleteAclsMatchingAcl(
                        error_code=Errors.UNKNOWN_SERVER_ERROR if err else 0,
                        error_message=err and f"the ACLs cannot be deleted: {err}",
                        resource_type=b.resource_type, resource_name=b.name, pattern_type=b.pattern_type,
                        principal=b.principal, host=b.host, operation=b.operation, permission_type=b.permission))
                out.append(R.DeleteAclsFilterResult(error_code=0, error_message=None, matching_acls=acls))
            return R(throttle_time_ms=0, filter_results=out)
        return run()
