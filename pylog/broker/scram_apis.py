"""DescribeUserScramCredentials (50) and AlterUserScramCredentials (51), KIP-554.

Credentials live in the cluster's metadata store as Kafka's ZooKeeper mode
keeps them: the user's entity config (/config/users/<user>) holds
`SCRAM-SHA-256` / `SCRAM-SHA-512` = `salt=..,stored_key=..,server_key=..,iterations=..`
(ScramCredentialUtils), next to the user's quotas. The client sends a salted
password; the broker derives and stores only the keys. Served where the
store is (as quota_apis.py), forwarded to the controller elsewhere. Errors and
messages are Kafka's ScramControlManager's and ScramImage's.

Threads: handlers on the broker's loop; store reads and writes on worker threads.
"""
from __future__ import annotations

import asyncio

from ..protocol import messages as m
from ..protocol.error_codes import Errors
from . import api_versions as av
from .quota_apis import QuotaApis
from .quotas import USER, entity_of, entity_path
from .sasl_scram import MAX_ITERATIONS, MECHANISM_TYPES, MIN_ITERATIONS, TYPE_OF, ScramCredential


def _scram_users(store) -> dict[str, dict[str, str]]:
    """{user: {mechanism: credential text}} for every user holding one."""
    out = {}
    for path, config in store.client_quotas().items():
        entity = entity_of(path)
        if list(entity) != [USER] or entity[USER] is None:
            continue
        creds = {k: v for k, v in config.items() if k in TYPE_OF}
        if creds:
            out[entity[USER]] = creds
    return out


class ScramApis:
    def __init__(self, broker):
        self.broker = broker
        self._forwarder = QuotaApis(broker)

    def table(self) -> dict:
        return {av.DESCRIBE_USER_SCRAM_CREDENTIALS: self.describe, av.ALTER_USER_SCRAM_CREDENTIALS: self.alter}

    # ---- DescribeUserScramCredentials (50) ----

    def describe(self, header, req):
        R = m.DescribeUserScramCredentialsResponse
        store = self.broker.metadata_store
        if store is None:
            return self._forwarder._forward(req, header.request_api_version, lambda msg: R(
                throttle_time_ms=0, error_code=Errors.NOT_CONTROLLER, error_message=msg, results=[]))

        def run():
            table = _scram_users(store)
            names = sorted(table) if not req.users else [u.name for u in req.users]
            results, seen = [], set()
            for name in names:
                if name in seen:
                    continue
                if names.count(name) > 1:
                    seen.add(name)
                    results.append(R.DescribeUserScramCredentialsResult(
                        user=name, error_code=Errors.DUPLICATE_RESOURCE, credential_infos=[],
                        error_message=f"Cannot describe SCRAM credentials for the same user twice in a single "
                                      f"request: {name}"))
                    continue
                creds = table.get(name)
                if not creds:
                    results.append(R.DescribeUserScramCredentialsResult(
                        user=name, error_code=Errors.RESOURCE_NOT_FOUND, credential_infos=[],
                        error_message=f"Attempt to describe a user credential that does not exist: {name}"))
                    continue
                results.append(R.DescribeUserScramCredentialsResult(
                    user=name, error_code=0, error_message=None, credential_infos=[
                        R.CredentialInfo(mechanism=TYPE_OF[mech], iterations=ScramCredential.from_text(t).iterations)
                        for mech, t in sorted(creds.items())]))
            return R(throttle_time_ms=0, error_code=0, error_message=None, results=results)

        async def serve():
            try:
                return await asyncio.get_running_loop().run_in_executor(None, run)
            except Exception as e:  # noqa: BLE001 - the store unreachable
                return R(throttle_time_ms=0, error_code=Errors.UNKNOWN_SERVER_ERROR,
                         error_message=f"the credentials cannot be read: {e}", results=[])
        return serve()

    # ---- AlterUserScramCredentials (51) ----

    def alter(self, header, req):
        R = m.AlterUserScramCredentialsResponse
        store = self.broker.metadata_store
        users = [d.name for d in req.deletions] + [u.name for u in req.upsertions]
        if store is None:
            return self._forwarder._forward(req, header.request_api_version, lambda msg: R(
                throttle_time_ms=0, results=[R.AlterUserScramCredentialsResult(
                    user=u, error_code=Errors.NOT_CONTROLLER, error_message=msg) for u in dict.fromkeys(users)]))
        errors: dict[str, tuple[int, str]] = {}
        seen = set()
        for op in list(req.deletions) + list(req.upsertions):
            key = (op.name, op.mechanism)
            if key in seen:
                errors[op.name] = (Errors.DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the "
                                                              "same request")
            seen.add(key)

        def check(op, upsert):
            if not op.name:
                return Errors.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"
            if op.mechanism not in MECHANISM_TYPES:
                return Errors.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"
            if upsert and op.iterations < MIN_ITERATIONS:
                return Errors.UNACCEPTABLE_CREDENTIAL, "Too few iterations"
            if upsert and op.iterations > MAX_ITERATIONS:
                return Errors.UNACCEPTABLE_CREDENTIAL, "Too many iterations"
            return None

        for ops, upsert in ((req.deletions, False), (req.upsertions, True)):
            for op in ops:
                err = check(op, upsert)
                if err is not None and op.name not in errors:
                    errors[op.name] = err

        def apply():
            # A user's operations all apply or none do (Kafka answers per user).
            by_user: dict[str, list] = {}
            for d in req.deletions:
                by_user.setdefault(d.name, []).append((d, False))
            for u in req.upsertions:
                by_user.setdefault(u.name, []).append((u, True))
            for name, ops in by_user.items():
                if name in errors:
                    continue
                path = entity_path({USER: name})
                config = store.entity_config(path)
                for op, upsert in ops:
                    mech = MECHANISM_TYPES[op.mechanism]
                    if upsert:
                        config[mech] = ScramCredential.from_salted(
                            mech, bytes(op.salt), bytes(op.salted_password), op.iterations).to_text()
                    elif mech not in config:
                        errors[name] = (Errors.RESOURCE_NOT_FOUND,
                                        "Attempt to delete a user credential that does not exist")
                        break
                    else:
                        del config[mech]
                else:
                    store.set_client_quotas(path, config)
            return [R.AlterUserScramCredentialsResult(user=u, error_code=errors.get(u, (0, None))[0],
                                                      error_message=errors.get(u, (0, None))[1])
                    for u in dict.fromkeys(users)]

        async def serve():
            try:
                results = await asyncio.get_running_loop().run_in_executor(None, apply)
            except Exception as e:  # noqa: BLE001 - the store unreachable
                results = [R.AlterUserScramCredentialsResult(user=u, error_code=Errors.UNKNOWN_SERVER_ERROR,
                                                             error_message=f"the credentials cannot be written: {e}")
                           for u in dict.fromkeys(users)]
            return R(throttle_time_ms=0, results=results)
        return serve()
