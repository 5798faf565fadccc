"""DescribeClientQuotas (48) and AlterClientQuotas (49), KIP-546.

Served by any broker that holds the cluster's metadata store (ZooKeeper, the
embedded controller's broker, a lone broker): read and written there, on a
worker thread. A broker of the embedded controller without the store forwards
the request to the controller, as KRaft brokers forward these. What the
entries may hold is pylog/broker/quotas.py's business. load_table is how
every broker reads the table it enforces (client_quotas.refresh): from the
store where it has one, else from the controller with DescribeClientQuotas.

Threads: the handlers run on the broker's loop; store reads and writes run on
worker threads.
"""
from __future__ import annotations

import asyncio
import logging

from ..errors import InvalidRequestError, PylogError, code_for
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from . import api_versions as av
from .quotas import CLIENT_ID, ENTITY_TYPES, IP, USER, check_entity, check_op, entity_of, entity_path, matches

log = logging.getLogger("pylog.broker")


class QuotaApis:
    def __init__(self, broker):
        self.broker = broker

    def table(self) -> dict:
        return {av.DESCRIBE_CLIENT_QUOTAS: self.describe_client_quotas,
                av.ALTER_CLIENT_QUOTAS: self.alter_client_quotas}

    def _forward(self, req, version, refuse):
        from .handlers import forward_to_controller
        return forward_to_controller(self.broker, req, version, refuse)

    # ---- DescribeClientQuotas (48) ----

    def describe_client_quotas(self, header, req):
        R = m.DescribeClientQuotasResponse
        store = self.broker.metadata_store

        def refuse(msg, code=Errors.NOT_CONTROLLER):
            return R(throttle_time_ms=0, error_code=code, error_message=msg, entries=None)
        if store is None:
            return self._forward(req, header.request_api_version, refuse)
        filters, seen = [], set()
        for c in req.components:
            if c.entity_type in seen:
                return refuse(f"Duplicate {c.entity_type} entity type in request", Errors.INVALID_REQUEST)
            seen.add(c.entity_type)
            if c.entity_type not in ENTITY_TYPES or c.match_type not in (0, 1, 2):
                return refuse(f"Custom entity type {c.entity_type!r} or match type {c.match_type} not supported",
                              Errors.INVALID_REQUEST)
            if c.match_type == 0 and c.match is None:
                return refuse(f"Invalid null match for {c.entity_type}", Errors.INVALID_REQUEST)
            filters.append((c.entity_type, c.match_type, c.match))

        async def run():
            try:
                table = await asyncio.get_running_loop().run_in_executor(None, store.client_quotas)
            except Exception as e:  # noqa: BLE001 - the store unreachable
                return refuse(f"the client quotas cannot be read: {e}", Errors.UNKNOWN_SERVER_ERROR)
            entries = []
            for path, configs in sorted(table.items()):
                entity = entity_of(path)
                if not matches(entity, filters, req.strict):
                    continue
                values = []
                for k, v in sorted(configs.items()):
                    try:
                        values.append(R.ValueData(key=k, value=float(v)))
                    except ValueError:
                        continue
                if values:
                    entries.append(R.EntryData(entity=[R.EntityData(entity_type=t, entity_name=entity[t])
                                                       for t in (USER, CLIENT_ID, IP) if t in entity], values=values))
            return R(throttle_time_ms=0, error_code=0, error_message=None, entries=entries)
        return run()

    # ---- AlterClientQuotas (49) ----

    def alter_client_quotas(self, header, req):
        R = m.AlterClientQuotasResponse
        store = self.broker.metadata_store

        def entry(e, code, msg):
            return R.EntryData(error_code=code, error_message=msg, entity=[
                R.EntityData(entity_type=x.entity_type, entity_name=x.entity_name) for x in e.entity])

        if store is None:
            return self._forward(req, header.request_api_version, lambda msg: R(throttle_time_ms=0, entries=[
                entry(e, Errors.NOT_CONTROLLER, msg) for e in req.entries]))
        checked = []
        for e in req.entries:
            try:
                entity = check_entity([(x.entity_type, x.entity_name) for x in e.entity])
                keys = set()
                for op in e.ops:
                    if op.key in keys:
                        raise InvalidRequestError(f"Duplicate quota key {op.key} not updated")
                    keys.add(op.key)
                    check_op(entity, op.key, op.value, op.remove)
                checked.append((e, entity, None))
            except InvalidRequestError as err:
                checked.append((e, None, err))
        def apply():
            out = []
            for e, entity, err in checked:
                if err is not None:
                    out.append(entry(e, code_for(err), str(err)))
                    continue
                try:
                    path = entity_path(entity)
                    current = dict(store.client_quotas().get(path, {}))
                    for op in e.ops:
                        if op.remove:
                            current.pop(op.key, None)
                        else:
                            current[op.key] = repr(float(op.value))
                    if not req.validate_only:
                        store.set_client_quotas(path, current)
                    out.append(entry(e, 0, None))
                except Exception as ex:  # noqa: BLE001 - this entry's error; the others still apply
                    out.append(entry(e, code_for(ex) if isinstance(ex, PylogError) else Errors.UNKNOWN_SERVER_ERROR,
                                     str(ex)))
            return out

        async def run():
            entries = await asyncio.get_running_loop().run_in_executor(None, apply)
            quotas = getattr(self.broker, "mutation_quotas", None)
            if quotas is not None:
                quotas.invalidate()
            changed = getattr(self.broker, "quotas_changed", None)
            if changed is not None:
                changed.set()  # this broker enforces the new table at once
            return R(throttle_time_ms=0, entries=entries)
        return run()


def load_table(broker) -> dict:
    """The cluster's quota table {entity path: {key: value}}, read on a
    worker thread: from the metadata store, or asked of the controller."""
    store = broker.metadata_store
    if store is not None:
        return store.client_quotas()
    ep = broker.metadata_cache.controller()
    if ep is None:
        raise PylogError("no controller is known")
    from .handlers import _forward
    Q = m.DescribeClientQuotasRequest
    r = _forward(ep, Q(components=[], strict=False), 1, broker.config.inter_broker_tls(), broker.inter_broker_sasl)
    if r.error_code:
        raise PylogError(f"DescribeClientQuotas: error {r.error_code}: {r.error_message}")
    return {entity_path({e.entity_type: e.entity_name for e in entry.entity}):
            {v.key: repr(float(v.value)) for v in entry.values} for entry in r.entries or ()}
