"""`pylog acls`: kafka-acls.sh (Kafka's AclCommand).

    pylog acls --bootstrap-server H:P --add|--remove|--list
        [--topic T]... [--group G]... [--cluster] [--transactional-id X]... [--idempotent]
        [--delegation-token D]... [--user-principal U]...
        [--resource-pattern-type literal|prefixed|any|match]
        [--allow-principal P]... [--deny-principal P]... [--allow-host H]... [--deny-host H]...
        [--operation OP]... [--producer] [--consumer] [--principal P]... [--force]

The ACLs each option set builds, the questions --remove asks without
--force, and what is printed (`Adding ACLs for resource `ResourcePattern(...)`:`,
`Current ACLs for resource ...`, entries as `(principal=.., host=..,
operation=.., permissionType=..)`) are Kafka's. Errors print
`Error while executing ACL command: ...` and exit 1.

One thread; blocking sockets (pylog's Client).
"""
from __future__ import annotations

import sys

from ..broker.authorizer import (ALL, ALLOW, ANY, CLUSTER, CLUSTER_NAME, CREATE, DELEGATION_TOKEN, DENY, DESCRIBE,
                                 GROUP, IDEMPOTENT_WRITE, LITERAL, MATCH, OPERATIONS, PATTERN_TYPES, PREFIXED, READ,
                                 RESOURCE_TYPES, SUPPORTED_OPERATIONS, TOPIC, TRANSACTIONAL_ID, USER, WRITE,
                                 AclBinding, camel, operation_code, pattern_str)
from ..client.errors import error_for
from ..errors import PylogError
from ..protocol import messages as m
from ..protocol.errors import ProtocolError
from .common import add_bootstrap, add_command_config, open_client

__all__ = ["add_acls_parser"]

_VERSION = 3
_PATTERNS = {"literal": LITERAL, "prefixed": PREFIXED, "any": ANY, "match": MATCH}


def add_acls_parser(sub) -> None:
    p = sub.add_parser("acls", help="add, remove or list ACLs (kafka-acls)",
                       description="This tool helps to manage acls on kafka.")
    add_bootstrap(p)
    add_command_config(p)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--add", action="store_true", help="Indicates you are trying to add ACLs.")
    mode.add_argument("--remove", action="store_true", help="Indicates you are trying to remove ACLs.")
    mode.add_argument("--list", action="store_true",
                      help="List ACLs for the specified resource, use --topic <topic> or --group <group> or "
                           "--cluster to specify a resource.")
    many = dict(action="append", default=[])
    p.add_argument("--topic", **many, help="topic to which ACLs should be added or removed. "
                                           "A value of '*' indicates ACL should apply to all topics.")
    p.add_argument("--cluster", action="store_true", help="Add/Remove cluster ACLs.")
    p.add_argument("--group", **many, help="Consumer Group to which the ACLs should be added or removed. "
                                           "A value of '*' indicates the ACLs should apply to all groups.")
    p.add_argument("--transactional-id", **many, help="The transactionalId to which ACLs should be added or "
                                                      "removed. A value of '*' indicates all transactionalIds.")
    p.add_argument("--idempotent", action="store_true",
                   help="Enable idempotence for the producer. This should be used in combination with the "
                        "--producer option.")
    p.add_argument("--delegation-token", **many, help="Delegation token to which ACLs should be added or removed.")
    p.add_argument("--user-principal", **many, help="Specifies a user principal as a resource in relation with "
                                                    "the operation.")
    p.add_argument("--resource-pattern-type", default="literal", type=str.lower, choices=sorted(_PATTERNS),
                   help="The type of the resource pattern or pattern filter (default: literal).")
    p.add_argument("--operation", **many, help="Operation that is being allowed or denied (default: All). Valid "
                                               "operation names are: " + ", ".join(
                                                   camel(v) for v in OPERATIONS.values()))
    p.add_argument("--allow-principal", **many, help="principal is in principalType:name format.")
    p.add_argument("--deny-principal", **many, help="principal is in principalType:name format. "
                                                    "DENY RULES TAKE PRECEDENCE OVER ALLOW RULES.")
    p.add_argument("--principal", **many, help="List ACLs for the specified principal.")
    p.add_argument("--allow-host", **many, help="Host from which principals listed in --allow-principal will have "
                                                "access (default: '*').")
    p.add_argument("--deny-host", **many, help="Host from which principals listed in --deny-principal will be "
                                               "denied access (default: '*').")
    p.add_argument("--producer", action="store_true", help="Convenience option to add/remove ACLs for producer "
                                                           "role: WRITE, DESCRIBE and CREATE on topic.")
    p.add_argument("--consumer", action="store_true", help="Convenience option to add/remove ACLs for consumer "
                                                           "role: READ, DESCRIBE on topic and READ on group.")
    p.add_argument("--force", action="store_true", help="Assume Yes to all queries and do not prompt.")
    p.set_defaults(tool=_run, client_id="acl-command")


class UsageError(Exception):
    pass


def _run(args) -> int:
    try:
        return _main(args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 1
    except (PylogError, ProtocolError, OSError, ValueError) as e:
        print(f"Error while executing ACL command: {e}")
        return 1


def _main(args) -> int:
    pattern = _PATTERNS[args.resource_pattern_type]
    if args.add and pattern not in (LITERAL, PREFIXED):
        raise UsageError(f"A '--resource-pattern-type' value of '{PATTERN_TYPES[pattern]}' is not valid when "
                         f"adding acls.")
    if args.idempotent and not args.producer:
        raise UsageError("The --idempotent option is only available if --producer is set")
    if (args.producer or args.consumer) and not args.add and not args.remove:
        raise UsageError("With --producer or --consumer you must specify one of --add or --remove")
    with open_client(args) as client:
        conn = client.any_connection()
        if args.list:
            return _list(conn, args, pattern)
        table = _resource_acls(args, pattern)
        if args.add:
            return _add(conn, table)
        return _remove(conn, table, args.force)


def _resources(args, pattern, must=True) -> list[tuple[int, str, int]]:
    out = [(TOPIC, t.strip(), pattern) for t in args.topic]
    if pattern == LITERAL and (args.cluster or args.idempotent):
        out.append((CLUSTER, CLUSTER_NAME, LITERAL))
    out += [(GROUP, g.strip(), pattern) for g in args.group]
    out += [(TRANSACTIONAL_ID, t, pattern) for t in args.transactional_id]
    out += [(DELEGATION_TOKEN, t.strip(), pattern) for t in args.delegation_token]
    out += [(USER, u.strip(), pattern) for u in args.user_principal]
    if not out and must:
        raise UsageError("You must provide at least one resource: --topic <topic> or --cluster or --group <group> "
                         "or --delegation-token <Delegation Token ID>")
    return list(dict.fromkeys(out))


def _principals(values) -> list[str]:
    out = []
    for v in values:
        kind, sep, name = v.strip().partition(":")
        if not sep or not kind or not name:
            raise ValueError(f"expected a string in format principalType:principalName but got {v.strip()}")
        out.append(v.strip())
    return out


def _entries(args, operations) -> set[tuple[str, str, int, int]]:
    entries = set()
    for principals, hosts, perm in ((args.allow_principal, args.allow_host, ALLOW),
                                    (args.deny_principal, args.deny_host, DENY)):
        ps = _principals(principals)
        hs = [h.strip() for h in hosts] or (["*"] if ps else [])
        entries |= {(p, h, op, perm) for p in ps for h in hs for op in operations}
    return entries


def _resource_acls(args, pattern) -> dict[tuple[int, str, int], set]:
    """Kafka's getResourceFilterToAcls: each resource and the entries the options make for it."""
    table: dict[tuple, set] = {}
    if not args.producer and not args.consumer:
        ops = {operation_code(o.strip()) for o in args.operation} or {ALL}
        for r in _resources(args, pattern):
            table[r] = _entries(args, ops)
    if args.producer:
        rs = _resources(args, pattern)
        for r in rs:
            if r[0] == TOPIC:
                table[r] = _entries(args, {WRITE, DESCRIBE, CREATE})
            elif r[0] == TRANSACTIONAL_ID:
                table[r] = _entries(args, {WRITE, DESCRIBE})
        if args.idempotent:
            table[(CLUSTER, CLUSTER_NAME, LITERAL)] = _entries(args, {IDEMPOTENT_WRITE})
    if args.consumer:
        for r in _resources(args, pattern):
            if r[0] == TOPIC:
                table.setdefault(r, set()).update(_entries(args, {READ, DESCRIBE}))
            elif r[0] == GROUP:
                table.setdefault(r, set()).update(_entries(args, {READ}))
    for (rtype, _name, _p), entries in table.items():
        valid = set(SUPPORTED_OPERATIONS[rtype]) | {ALL}
        if any(op not in valid for _pr, _h, op, _pe in entries):
            raise UsageError(f"ResourceType {RESOURCE_TYPES[rtype]} only supports operations "
                             f"{', '.join(OPERATIONS[o] for o in sorted(valid))}")
    return table


def _entry_str(principal, host, op, perm) -> str:
    return AclBinding(0, "", 0, principal, host, op, perm).entry_str()


def _describe(conn, rtype=ANY, name=None, pattern=ANY) -> list[AclBinding]:
    r = conn.request(m.DescribeAclsRequest(resource_type_filter=rtype, resource_name_filter=name,
                                           pattern_type_filter=pattern, principal_filter=None, host_filter=None,
                                           operation=ANY, permission_type=ANY), api_version=_VERSION)
    if r.error_code:
        raise error_for(r.error_code, r.error_message or "DescribeAcls failed")
    return [AclBinding(res.resource_type, res.resource_name, res.pattern_type, a.principal, a.host, a.operation,
                       a.permission_type) for res in r.resources for a in res.acls]


def _add(conn, table) -> int:
    C = m.CreateAclsRequest
    for (rtype, name, pattern), entries in table.items():
        if not entries:
            raise UsageError("You must specify one of: --allow-principal, --deny-principal when trying to add ACLs.")
        existing = set(_describe(conn, rtype, name, pattern))
        new = []
        for e in sorted(entries):
            b = AclBinding(rtype, name, pattern, *e)
            if b in existing:
                print(f"Acl (pattern={pattern_str(rtype, name, pattern)}, entry={b.entry_str()}) already exists.")
            else:
                new.append(b)
        if not new:
            continue
        print(f"Adding ACLs for resource `{pattern_str(rtype, name, pattern)}`: \n "
              + "\n".join("\t" + b.entry_str() for b in new) + "\n")
        r = conn.request(C(creations=[C.AclCreation(resource_type=b.resource_type, resource_name=b.name,
                                                    resource_pattern_type=b.pattern_type, principal=b.principal,
                                                    host=b.host, operation=b.operation, permission_type=b.permission)
                                      for b in new]), api_version=_VERSION)
        for res in r.results:
            if res.error_code:
                raise error_for(res.error_code, res.error_message or "CreateAcls failed")
    return 0


def _remove(conn, table, force: bool) -> int:
    D = m.DeleteAclsRequest
    for (rtype, name, pattern), entries in table.items():
        where = pattern_str(rtype, name, pattern)
        if not entries:
            question = f"Are you sure you want to delete all ACLs for resource filter `{where}`? (y/n)"
            filters = [(None, None, ANY, ANY)]
        else:
            question = ("Are you sure you want to remove ACLs: \n "
                        + "\n".join("\t" + _entry_str(*e) for e in sorted(entries)) + f"\n from resource filter "
                        f"`{where}`? (y/n)")
            filters = sorted(entries)
        if not force:
            print(question)
            if sys.stdin.readline().strip().lower() != "y":
                continue
        r = conn.request(D(filters=[D.DeleteAclsFilter(resource_type_filter=rtype, resource_name_filter=name,
                                                       pattern_type_filter=pattern, principal_filter=p,
                                                       host_filter=h, operation=op, permission_type=perm)
                                    for p, h, op, perm in filters]), api_version=_VERSION)
        for res in r.filter_results:
            if res.error_code:
                raise error_for(res.error_code, res.error_message or "DeleteAcls failed")
    return 0


def _list(conn, args, pattern) -> int:
    resources = _resources(args, pattern, must=False)
    bindings = []
    if not resources:
        bindings = _describe(conn)
    for rtype, name, p in resources:
        bindings += _describe(conn, rtype, name, p)
    by_resource: dict[tuple, list] = {}
    for b in bindings:
        by_resource.setdefault((b.resource_type, b.name, b.pattern_type), []).append(b)
    principals = _principals(args.principal)
    groups = [(None, by_resource)] if not principals else [
        (pr, {k: [b for b in v if b.principal == pr] for k, v in by_resource.items()}) for pr in principals]
    for pr, table in groups:
        if pr is not None:
            print(f"ACLs for principal `{pr}`")
        for (rtype, name, p), bs in sorted(table.items()):
            if not bs:
                continue
            print(f"Current ACLs for resource `{pattern_str(rtype, name, p)}`:\n"
                  + "\n".join("\t" + b.entry_str() for b in sorted(set(bs))) + "\n")
    return 0
