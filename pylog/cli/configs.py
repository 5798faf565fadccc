"""`pylog configs`: kafka-configs.sh (Kafka's ConfigCommand): topics, brokers,
groups, users and clients.

    pylog configs --bootstrap-server H:P --entity-type topics|brokers|groups
        [--entity-name N | --entity-default] (--describe [--all] | --alter [--add-config K=V,...]
        [--delete-config K,...])
    pylog configs --bootstrap-server H:P --entity-type clients [--entity-name C]
        (--describe | --alter --add-config producer_byte_rate=1048576)

Topics, brokers and groups: DescribeConfigs with synonyms, printed as Kafka
prints them (`Dynamic configs for topic t are:` then `  k=v sensitive=false
synonyms={DYNAMIC_TOPIC_CONFIG:k=v, DEFAULT_CONFIG:log.k=v}`, sorted by
name; --all lists every config, not only the dynamic ones), and
IncrementalAlterConfigs (deletes, then sets) for --alter, answered
`Completed updating config for topic t.`. Brokers: a broker's dynamic
configs (sent to that broker) or, with --entity-default, the cluster-wide
ones (`Default configs for brokers in the cluster are:`, `Completed
updating default config for brokers in the cluster.`). Broker loggers
(--entity-type broker-loggers --entity-name 1): the log levels of that
broker's Python loggers in log4j's names, `--add-config pylog.broker=DEBUG`
or `--delete-config pylog.broker` (back to inheriting). Without --entity-name, every topic,
broker or group is described. Clients: their quotas (DescribeClientQuotas /
AlterClientQuotas on the client-id entity), `Quota configs for client-id 'c'
are k=v`.

    pylog configs --bootstrap-server H:P [--command-config FILE] --entity-type users
        [--entity-name alice] (--describe | --alter [--add-config K=V,...] [--delete-config K,...])

A user's configs are its SCRAM credentials (AlterUserScramCredentials /
DescribeUserScramCredentials) and its client quotas (AlterClientQuotas /
DescribeClientQuotas), as in Kafka's tool with --bootstrap-server:
`--add-config 'SCRAM-SHA-256=[iterations=8192,password=alice-secret]'` (4096
iterations when not given) salts and hashes the password here, so only the
salted password crosses the wire; `--delete-config SCRAM-SHA-512` removes
one. Credentials and quotas cannot be altered in one command. The output
lines are Kafka's: `Completed updating config for user alice.`, `Quota
configs for user-principal 'alice' are k=v, ...`, `SCRAM credential configs
for user-principal 'alice' are SCRAM-SHA-256=iterations=8192`. Other entity
types (topics, brokers, clients, ips) are refused by name: this command
handles users only.

One thread; blocking sockets (pylog's Client).
"""
from __future__ import annotations

import os
import re
import sys

from ..broker.quotas import (
    CONSUMER_BYTE_RATE,
    CONTROLLER_MUTATION_RATE,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
)
from ..broker.sasl_scram import DEFAULT_ITERATIONS, MECHANISMS, MIN_ITERATIONS, TYPE_OF, hi
from ..client.errors import error_for, error_name
from ..protocol import messages as m
from .common import add_bootstrap, add_command_config, open_client

__all__ = ["add_configs_parser"]

# The quota keys of users and clients (connection_creation_rate belongs to ip entities).
QUOTA_KEYS = (CONTROLLER_MUTATION_RATE, PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE)
_SPLIT = re.compile(r",(?![^\[]*\])")   # commas outside [...]
_CREDENTIAL = re.compile(r"(?:iterations=(-?[0-9]*),)?password=(.*)", re.S)


def add_configs_parser(sub) -> None:
    p = sub.add_parser("configs", help="describe and alter configs of topics, brokers, groups, users and clients "
                                       "(kafka-configs)",
                       description="This tool helps to manipulate and describe entity config for a topic, "
                                   "client, user, broker or group")
    add_bootstrap(p)
    add_command_config(p)
    p.add_argument("--entity-type", required=True,
                   choices=("topics", "brokers", "broker-loggers", "groups", "users", "clients"),
                   help="Type of entity (topics/brokers/broker-loggers/groups/users/clients)")
    p.add_argument("--entity-name", help="Name of entity (the user); all users when describing without it")
    p.add_argument("--entity-default", action="store_true",
                   help="Default entity name for brokers (the cluster-wide dynamic broker configs)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--describe", action="store_true", help="List configs for the given entity.")
    what.add_argument("--alter", action="store_true", help="Alter the configuration for the entity.")
    p.add_argument("--all", action="store_true", help="List all configs for the given topic, broker or group, "
                                                      "not only the dynamic ones (with --describe).")
    p.add_argument("--add-config", default="",
                   help="Key Value pairs of configs to add, e.g. "
                        "'SCRAM-SHA-256=[iterations=8192,password=alice-secret],SCRAM-SHA-512=[password=alice-secret]'")
    p.add_argument("--delete-config", default="", help="config keys to remove, e.g. 'SCRAM-SHA-512'")
    p.set_defaults(tool=_run, client_id="configs-tool")


def parse_add_config(text: str) -> dict[str, str]:
    """Kafka's --add-config: k=v pairs split on commas outside square
    brackets, a bracketed value taken without its brackets."""
    out = {}
    for item in (x.strip() for x in _SPLIT.split(text) if x.strip()):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"Invalid entity config: all configs to be added must be in the format "
                             f"\"key=val\" ({item!r})")
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        out[key.strip()] = value
    return out


def _credential(mechanism: str, text: str) -> tuple[int, str]:
    mt = _CREDENTIAL.fullmatch(text)
    if mt is None:
        raise SystemExit(f"Invalid credential property {mechanism}={text}")
    iterations = int(mt.group(1)) if mt.group(1) not in (None, "", "-1") else DEFAULT_ITERATIONS
    if iterations < MIN_ITERATIONS:
        raise SystemExit(f"Iterations {iterations} is less than the minimum {MIN_ITERATIONS} required for "
                         f"{mechanism}")
    return iterations, mt.group(2)


# DescribeConfigs config_source -> Kafka's ConfigEntry.ConfigSource name.
CONFIG_SOURCES = {1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG", 3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
                  4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG", 6: "DYNAMIC_BROKER_LOGGER_CONFIG",
                  7: "CLIENT_METRICS_CONFIG", 8: "GROUP_CONFIG"}
# entity type -> (ConfigResource type, the config source that counts as dynamic)
_RESOURCES = {"topics": (2, 1), "brokers": (4, 2), "broker-loggers": (8, 6), "groups": (32, 8)}
_DEFAULT_BROKER_SOURCE = 3   # DYNAMIC_DEFAULT_BROKER_CONFIG: what the default broker entity lists



# entity type in the quota APIs -> how Kafka's tool names one entity of it
_QUOTA_ENTITY_NAMES = {"user": "user-principal", "client-id": "client-id"}


def _alter_quotas(conn, entity_type: str, name: str, add: dict, delete: list) -> None:
    """AlterClientQuotas on one entity (Kafka's user or client-id)."""
    Q = m.AlterClientQuotasRequest
    ops = [Q.OpData(key=k, value=float(v), remove=False) for k, v in add.items()]
    ops += [Q.OpData(key=k, value=0.0, remove=True) for k in delete]
    resp = conn.request(Q(entries=[Q.EntryData(entity=[Q.EntityData(entity_type=entity_type, entity_name=name)],
                                               ops=ops)], validate_only=False), api_version=0)
    for e in resp.entries:
        if e.error_code:
            raise error_for(e.error_code, e.error_message or error_name(e.error_code))


def _print_quotas(conn, entity_type: str, name: str | None) -> None:
    """DescribeClientQuotas of one entity (all of the type when name is None),
    as Kafka's tool prints them: `Quota configs for user-principal 'a' are k=v`."""
    Q = m.DescribeClientQuotasRequest
    component = Q.ComponentData(entity_type=entity_type, match_type=0 if name else 2, match=name)
    resp = conn.request(Q(components=[component], strict=bool(name)), api_version=0)
    if resp.error_code:
        raise error_for(resp.error_code, resp.error_message)
    label = _QUOTA_ENTITY_NAMES[entity_type]
    for entry in resp.entries or ():
        names = {e.entity_type: e.entity_name for e in entry.entity}
        who = f"the default {label}" if names.get(entity_type) is None else f"{label} '{names[entity_type]}'"
        values = ", ".join(f"{v.key}={v.value}" for v in entry.values)
        print(f"Quota configs for {who} are {values}")

def _run(args) -> int:
    if args.all and not args.describe:
        raise SystemExit("--all is only valid with --describe")
    if args.entity_default:
        if args.entity_type != "brokers":
            raise SystemExit(f"--entity-default is not supported for {args.entity_type} (pylog: brokers only)")
        if args.entity_name is not None:
            raise SystemExit("Only one of --entity-name or --entity-default may be specified per entity type")
        args.entity_name = ""   # Kafka's BROKER_DEFAULT_ENTITY_NAME
    if args.entity_type in _RESOURCES:
        return _resource(args)
    if args.entity_type == "clients":
        return _clients(args)
    if args.all:
        raise SystemExit(f"--all is only valid for topics, brokers and groups, not {args.entity_type}")
    if args.alter:
        if not args.entity_name:
            raise SystemExit("--entity-name is required with --alter")
        return _alter(args)
    if args.add_config or args.delete_config:
        raise SystemExit("--add-config and --delete-config need --alter")
    return _describe(args)


def _alter(args) -> int:
    user = args.entity_name
    add = parse_add_config(args.add_config)
    delete = [x.strip() for x in args.delete_config.split(",") if x.strip()]
    if not add and not delete:
        raise SystemExit("--alter needs --add-config or --delete-config")
    unknown = [k for k in add if k not in MECHANISMS and k not in QUOTA_KEYS]
    if unknown:
        raise SystemExit(f"Only quota and SCRAM credential configs can be added for 'users' using "
                         f"--bootstrap-server. Unexpected config names: {','.join(unknown)}")
    unknown = [k for k in delete if k not in MECHANISMS and k not in QUOTA_KEYS]
    if unknown:
        raise SystemExit(f"Only quota and SCRAM credential configs can be deleted for 'users' using "
                         f"--bootstrap-server. Unexpected config names: {','.join(unknown)}")
    scram = any(k in MECHANISMS for k in (*add, *delete))
    quota = any(k in QUOTA_KEYS for k in (*add, *delete))
    if scram and quota:
        raise SystemExit("Cannot alter both quota and SCRAM credential configs simultaneously for 'users' using "
                         "--bootstrap-server.")
    with open_client(args) as client:
        conn = client.controller_connection()
        if scram:
            R = m.AlterUserScramCredentialsRequest
            upserts = []
            for mech, text in add.items():
                iterations, password = _credential(mech, text)
                salt = os.urandom(32)
                upserts.append(R.ScramCredentialUpsertion(
                    name=user, mechanism=TYPE_OF[mech], iterations=iterations, salt=salt,
                    salted_password=hi(MECHANISMS[mech], password.encode(), salt, iterations)))
            resp = conn.request(R(deletions=[R.ScramCredentialDeletion(name=user, mechanism=TYPE_OF[k])
                                             for k in delete], upsertions=upserts), api_version=0)
            for r in resp.results:
                if r.error_code:
                    raise error_for(r.error_code, r.error_message or error_name(r.error_code))
        else:
            _alter_quotas(conn, "user", user, add, delete)
    print(f"Completed updating config for user {user}.")
    return 0


def _describe(args) -> int:
    user = args.entity_name
    with open_client(args) as client:
        conn = client.controller_connection()
        _print_quotas(conn, "user", user)
        D = m.DescribeUserScramCredentialsRequest
        resp = conn.request(D(users=[D.UserName(name=user)] if user else None), api_version=0)
        if resp.error_code:
            raise error_for(resp.error_code, resp.error_message)
        names = {v: k for k, v in TYPE_OF.items()}
        for r in resp.results:
            if r.error_code:
                exc = "ResourceNotFoundException" if error_name(r.error_code) == "RESOURCE_NOT_FOUND" \
                    else error_name(r.error_code)
                print(f"Error retrieving SCRAM credential configs for user-principal '{r.user}': "
                      f"{exc}: {r.error_message}")
                continue
            text = ", ".join(f"{names[i.mechanism]}=iterations={i.iterations}" for i in r.credential_infos)
            print(f"SCRAM credential configs for user-principal '{r.user}' are {text}")
    sys.stdout.flush()
    return 0


def _resource(args) -> int:
    rtype, dynamic = _RESOURCES[args.entity_type]
    singular = args.entity_type[:-1]
    by_broker = args.entity_type in ("brokers", "broker-loggers")
    if args.entity_type == "broker-loggers" and args.describe and not args.entity_name:
        raise SystemExit("An entity name must be specified with --describe of broker-loggers")
    if by_broker and args.entity_name:
        try:
            int(args.entity_name)
        except ValueError:
            raise SystemExit(f"The entity name for {args.entity_type} must be a valid integer broker id, found: "
                             f"{args.entity_name}") from None
    with open_client(args) as client:
        if args.alter:
            if args.entity_name is None:
                raise SystemExit("An entity-name or default entity must be specified with --alter of users, "
                                 "clients, brokers or ips" if args.entity_type == "brokers" else
                                 f"An entity name must be specified with --alter of {args.entity_type}")
            add = parse_add_config(args.add_config)
            delete = [x.strip() for x in args.delete_config.split(",") if x.strip()]
            if not add and not delete:
                raise SystemExit("At least one of --add-config, --add-config-file, or --delete-config must be "
                                 "specified with --alter")
            if args.entity_type == "broker-loggers":
                _check_loggers(client, args.entity_name, [*delete, *add])
            R = m.IncrementalAlterConfigsRequest
            ops = [R.AlterableConfig(name=k, config_operation=1, value=None) for k in delete]
            ops += [R.AlterableConfig(name=k, config_operation=0, value=v) for k, v in add.items()]
            # A broker's own configs go to that broker, as Kafka's admin client sends them.
            conn = (client.connection(int(args.entity_name)) if by_broker and args.entity_name
                    else client.any_connection())
            resp = conn.request(R(resources=[R.AlterConfigsResource(
                resource_type=rtype, resource_name=args.entity_name, configs=ops)], validate_only=False))
            for r in resp.responses:
                if r.error_code:
                    raise error_for(r.error_code, r.error_message or error_name(r.error_code))
            if args.entity_name:
                print(f"Completed updating config for {singular} {args.entity_name}.")
            else:
                print(f"Completed updating default config for {args.entity_type} in the cluster.")
            return 0
        if args.add_config or args.delete_config:
            raise SystemExit("--add-config and --delete-config need --alter")
        names = [args.entity_name] if args.entity_name is not None else _entities(client, args.entity_type)
        if by_broker and args.entity_name and not args.all \
                and int(args.entity_name) not in client.metadata([]).brokers:
            print(f"The {singular} '{args.entity_name}' doesn't exist and doesn't have dynamic config.")
            return 0
        D = m.DescribeConfigsRequest
        for name in names:
            conn = client.connection(int(name)) if by_broker and name else client.any_connection()
            resp = conn.request(D(resources=[D.DescribeConfigsResource(
                resource_type=rtype, resource_name=name, configuration_keys=None)], include_synonyms=True,
                include_documentation=False), api_version=min(2, conn.api_versions.get(32, (0, 2))[1]))
            if args.entity_type == "brokers" and not name:
                print("Default configs for brokers in the cluster are:")
            else:
                print(f"{'All' if args.all else 'Dynamic'} configs for {singular} {name} are:")
            wanted = _DEFAULT_BROKER_SOURCE if args.entity_type == "brokers" and not name else dynamic
            for r in resp.results:
                if r.error_code:
                    raise error_for(r.error_code, r.error_message or f"configs of {singular} {name!r}")
                for c in sorted(r.configs, key=lambda c: c.name):
                    if not args.all and c.config_source != wanted:
                        continue
                    syn = ", ".join(f"{CONFIG_SOURCES.get(x.source, 'UNKNOWN')}:{x.name}={_text(x.value)}"
                                    for x in (c.synonyms or ()))
                    print(f"  {c.name}={_text(c.value)} sensitive={str(c.is_sensitive).lower()} synonyms={{{syn}}}")
    return 0


def _check_loggers(client, broker: str, names) -> None:
    """Kafka's tool checks the loggers exist on that broker before it asks for a change."""
    D = m.DescribeConfigsRequest
    resp = client.connection(int(broker)).request(D(resources=[D.DescribeConfigsResource(
        resource_type=8, resource_name=broker, configuration_keys=None)], include_synonyms=False,
        include_documentation=False))
    for r in resp.results:
        if r.error_code:
            raise error_for(r.error_code, r.error_message or error_name(r.error_code))
        known = {c.name for c in r.configs}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SystemExit(f"Error: Invalid broker logger(s): {','.join(unknown)}")


def _entities(client, entity_type: str) -> list[str]:
    if entity_type == "topics":
        return sorted(t for t, md in client.metadata(None).topics.items() if not md.error_code)
    if entity_type == "brokers":
        # Every broker, then the cluster default (Kafka's tool lists it last).
        return [str(b) for b in sorted(client.metadata([]).brokers)] + [""]
    return sorted(g.group_id for g in client.list_groups())


def _clients(args) -> int:
    """A client id's quotas (the client-id entity), as Kafka's tool shows and changes them."""
    client_id = args.entity_name
    with open_client(args) as client:
        conn = client.controller_connection()
        if args.alter:
            if not client_id:
                raise SystemExit("--entity-name is required with --alter")
            add = parse_add_config(args.add_config)
            delete = [x.strip() for x in args.delete_config.split(",") if x.strip()]
            unknown = [k for k in (*add, *delete) if k not in QUOTA_KEYS]
            if unknown:
                raise SystemExit(f"Only quota configs can be added for 'clients' using --bootstrap-server. "
                                 f"Unexpected config names: {','.join(unknown)}")
            _alter_quotas(conn, "client-id", client_id, add, delete)
            print(f"Completed updating config for client {client_id}.")
            return 0
        _print_quotas(conn, "client-id", client_id)
    return 0


def _text(value) -> str:
    # Java prints a null value as "null".
    return "null" if value is None else value
