"""Kafka's ACL authorizer (StandardAuthorizer / AclAuthorizer semantics,
KAFKA-NOTES §12.5): ACL bindings, filters, and the allow/deny decision.

An ACL binding is a resource pattern (type, name, LITERAL or PREFIXED) and an
entry (principal, host, operation, ALLOW or DENY). A request is allowed when
its principal is a super user, or some ALLOW entry matches and no DENY entry
does; when no ACL at all exists on the resource, allow.everyone.if.no.acl.found
decides (default false).

Lookup never scans every ACL: bindings are indexed by resource type, then by
name (LITERAL, '*' kept apart) and, for PREFIXED, by the prefix, probed once
per distinct prefix length present (a name of n characters needs at most n
dictionary lookups, whatever the number of ACLs). Decisions are cached per
(principal, host, operation, resource) until the ACL set changes.

Threads: the broker's event loop only (acl_apis.py hops store watches to it);
a change builds new index objects and swaps them in, so a decision sees the
old set or the new one, never half of each.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

from ..protocol.error_codes import Errors

# AclOperation, ResourceType, PatternType, AclPermissionType codes (Kafka's enums).
UNKNOWN, ANY = 0, 1
ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION = 2, 3, 4, 5, 6, 7, 8, 9
DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, CREATE_TOKENS, DESCRIBE_TOKENS, TWO_PHASE_COMMIT = \
    10, 11, 12, 13, 14, 15
OPERATIONS = {ALL: "ALL", READ: "READ", WRITE: "WRITE", CREATE: "CREATE", DELETE: "DELETE", ALTER: "ALTER",
              DESCRIBE: "DESCRIBE", CLUSTER_ACTION: "CLUSTER_ACTION", DESCRIBE_CONFIGS: "DESCRIBE_CONFIGS",
              ALTER_CONFIGS: "ALTER_CONFIGS", IDEMPOTENT_WRITE: "IDEMPOTENT_WRITE", CREATE_TOKENS: "CREATE_TOKENS",
              DESCRIBE_TOKENS: "DESCRIBE_TOKENS", TWO_PHASE_COMMIT: "TWO_PHASE_COMMIT"}

TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, DELEGATION_TOKEN, USER = 2, 3, 4, 5, 6, 7
RESOURCE_TYPES = {TOPIC: "TOPIC", GROUP: "GROUP", CLUSTER: "CLUSTER", TRANSACTIONAL_ID: "TRANSACTIONAL_ID",
                  DELEGATION_TOKEN: "DELEGATION_TOKEN", USER: "USER"}
# The names Kafka's ZooKeeper paths use (ResourceType's camel-case names).
RESOURCE_PATH_NAMES = {TOPIC: "Topic", GROUP: "Group", CLUSTER: "Cluster", TRANSACTIONAL_ID: "TransactionalId",
                       DELEGATION_TOKEN: "DelegationToken", USER: "User"}

MATCH, LITERAL, PREFIXED = 2, 3, 4
PATTERN_TYPES = {ANY: "ANY", MATCH: "MATCH", LITERAL: "LITERAL", PREFIXED: "PREFIXED"}

DENY, ALLOW = 2, 3
PERMISSIONS = {DENY: "DENY", ALLOW: "ALLOW"}

CLUSTER_NAME = "kafka-cluster"
WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"
# Metadata's and DescribeCluster's authorized operations when the request did not ask (Integer.MIN_VALUE).
NOT_ASKED = -(1 << 31)

# Kafka's AclEntry.supportedOperations per resource type (the bits of the
# authorized-operations fields, and what AclCommand lets one grant).
SUPPORTED_OPERATIONS = {
    TOPIC: (READ, WRITE, CREATE, DESCRIBE, DELETE, ALTER, DESCRIBE_CONFIGS, ALTER_CONFIGS),
    GROUP: (READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS),
    CLUSTER: (CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER, DESCRIBE),
    TRANSACTIONAL_ID: (DESCRIBE, WRITE, TWO_PHASE_COMMIT),
    DELEGATION_TOKEN: (DESCRIBE,),
    USER: (CREATE_TOKENS, DESCRIBE_TOKENS),
}

# An ALLOW of the key grants these too (Kafka's implied operations); DENY
# entries imply nothing (DENY READ leaves DESCRIBE alone).
_IMPLIED_BY = {DESCRIBE: frozenset({DESCRIBE, READ, WRITE, DELETE, ALTER, ALL}),
               DESCRIBE_CONFIGS: frozenset({DESCRIBE_CONFIGS, ALTER_CONFIGS, ALL})}

_CACHE_MAX = 100_000


class AclBinding(NamedTuple):
    resource_type: int
    name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int

    def pattern_str(self) -> str:
        return pattern_str(self.resource_type, self.name, self.pattern_type)

    def entry_str(self) -> str:
        """AccessControlEntry's text, as kafka-acls prints it."""
        return (f"(principal={self.principal}, host={self.host}, operation={OPERATIONS[self.operation]}, "
                f"permissionType={PERMISSIONS[self.permission]})")


def pattern_str(resource_type: int, name: str | None, pattern_type: int) -> str:
    """ResourcePattern / ResourcePatternFilter's text, as kafka-acls prints it."""
    return (f"ResourcePattern(resourceType={RESOURCE_TYPES.get(resource_type, 'ANY')}, "
            f"name={'<any>' if name is None else name}, patternType={PATTERN_TYPES.get(pattern_type, 'UNKNOWN')})")


def camel(name: str) -> str:
    """Kafka's SecurityUtils.operationName: READ -> Read, IDEMPOTENT_WRITE -> IdempotentWrite."""
    return "".join(w.capitalize() for w in name.split("_"))


_OP_BY_NAME = {camel(v).lower(): k for k, v in OPERATIONS.items()}
_TYPE_BY_PATH = {v: k for k, v in RESOURCE_PATH_NAMES.items()}
_PERM_BY_NAME = {"allow": ALLOW, "deny": DENY}


def operation_code(text: str) -> int:
    """An operation by its Kafka name, any case, with or without underscores."""
    code = _OP_BY_NAME.get(text.replace("_", "").lower())
    if code is None:
        raise ValueError(f"Invalid operation {text!r}: one of {', '.join(camel(v) for v in OPERATIONS.values())}")
    return code


def to_stored(b: AclBinding) -> tuple[tuple[str, str, str], dict]:
    """The binding as the metadata store keeps it (Kafka's ZooKeeper JSON)."""
    return ((RESOURCE_PATH_NAMES[b.resource_type], PATTERN_TYPES[b.pattern_type], b.name),
            {"principal": b.principal, "permissionType": camel(PERMISSIONS[b.permission]),
             "operation": camel(OPERATIONS[b.operation]), "host": b.host})


def from_stored(resource: tuple[str, str, str], entries: list[dict]) -> list[AclBinding]:
    rtype, pattern, name = resource
    code = _TYPE_BY_PATH[rtype]
    ptype = PREFIXED if pattern == "PREFIXED" else LITERAL
    return [AclBinding(code, name, ptype, e["principal"], e["host"], operation_code(e["operation"]),
                       _PERM_BY_NAME[e["permissionType"].lower()]) for e in entries]


class AclFilter(NamedTuple):
    """AclBindingFilter: None / ANY fields match everything."""
    resource_type: int = ANY
    name: str | None = None
    pattern_type: int = ANY
    principal: str | None = None
    host: str | None = None
    operation: int = ANY
    permission: int = ANY

    def matches(self, b: AclBinding) -> bool:
        if self.resource_type != ANY and self.resource_type != b.resource_type:
            return False
        if self.pattern_type not in (ANY, MATCH) and self.pattern_type != b.pattern_type:
            return False
        if self.name is not None:
            if self.pattern_type in (ANY, b.pattern_type):
                if self.name != b.name:
                    return False
            elif b.pattern_type == LITERAL:
                if b.name != self.name and b.name != WILDCARD:
                    return False
            elif not self.name.startswith(b.name):   # MATCH against a PREFIXED pattern
                return False
        return ((self.principal is None or self.principal == b.principal)
                and (self.host is None or self.host == b.host)
                and self.operation in (ANY, b.operation)
                and self.permission in (ANY, b.permission))


def validate_binding(b: AclBinding) -> str | None:
    """Why CreateAcls refuses this binding with INVALID_REQUEST, or None."""
    if b.resource_type not in RESOURCE_TYPES:
        return f"Invalid resourceType {b.resource_type}"
    if b.pattern_type not in (LITERAL, PREFIXED):
        return f"Invalid patternType {b.pattern_type}"
    if b.operation not in OPERATIONS:
        return f"Invalid operation {b.operation}"
    if b.permission not in PERMISSIONS:
        return f"Invalid permissionType {b.permission}"
    if not b.name:
        return "Resource name should not be empty"
    if b.resource_type == CLUSTER and b.name != CLUSTER_NAME:
        return f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
    if b.pattern_type == PREFIXED and b.name == WILDCARD:
        return "A PREFIXED pattern with name '*' is not supported: use a LITERAL '*'"
    kind, sep, name = (b.principal or "").partition(":")
    if not sep or not kind or not name:
        return f"Could not parse principal from `{b.principal}` (no colon is present separating the principal type " \
               f"from the principal name)"
    if b.host is None or b.host == "":
        return "Invalid host: it must be '*' or an address"
    return None


def validate_filter(f: AclFilter) -> str | None:
    """Why DescribeAcls / DeleteAcls refuse this filter (INVALID_REQUEST), or None."""
    if f.resource_type != ANY and f.resource_type not in RESOURCE_TYPES:
        return f"Invalid resourceType {f.resource_type} in the filter"
    if f.pattern_type not in PATTERN_TYPES:
        return f"Invalid patternType {f.pattern_type} in the filter"
    if f.operation != ANY and f.operation not in OPERATIONS:
        return f"Invalid operation {f.operation} in the filter"
    if f.permission != ANY and f.permission not in PERMISSIONS:
        return f"Invalid permissionType {f.permission} in the filter"
    return None


class _TypeIndex:
    """One resource type's bindings: literal by name, '*' apart, prefixed by prefix."""
    __slots__ = ("literal", "prefixed", "prefix_lengths", "wildcard")

    def __init__(self):
        self.literal: dict[str, tuple] = {}
        self.prefixed: dict[str, tuple] = {}
        self.prefix_lengths: tuple = ()
        self.wildcard: tuple = ()


def _build(bindings: Iterable[AclBinding]) -> dict[int, _TypeIndex]:
    lists: dict[int, tuple[dict, dict, list]] = {}
    for b in bindings:
        lit, pre, wild = lists.setdefault(b.resource_type, ({}, {}, []))
        if b.pattern_type == PREFIXED:
            pre.setdefault(b.name, []).append(b)
        elif b.name == WILDCARD:
            wild.append(b)
        else:
            lit.setdefault(b.name, []).append(b)
    out = {}
    for rtype, (lit, pre, wild) in lists.items():
        ix = _TypeIndex()
        ix.literal = {k: tuple(v) for k, v in lit.items()}
        ix.prefixed = {k: tuple(v) for k, v in pre.items()}
        ix.prefix_lengths = tuple(sorted({len(k) for k in pre}))
        ix.wildcard = tuple(wild)
        out[rtype] = ix
    return out


class Authorizer:
    """The broker's authorizer: this broker's copy of the cluster's ACLs
    (kept in step with the metadata store by acl_apis.py) and the decision on them."""

    def __init__(self, super_users: Iterable[str] = (), allow_if_no_acl: bool = False):
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self._bindings: frozenset[AclBinding] = frozenset()
        self._index: dict[int, _TypeIndex] = {}
        self._cache: dict = {}

    @classmethod
    def from_config(cls, config) -> "Authorizer":
        return cls(parse_super_users(config.get("super.users")), config.get("allow.everyone.if.no.acl.found"))

    # ---- the ACL set ----

    def bindings(self) -> frozenset[AclBinding]:
        return self._bindings

    def set_resources(self, changed: dict[tuple[str, str, str], list[dict]]) -> None:
        """Resources' entries as the store now holds them (one index rebuild
        for the lot)."""
        keys = {(_TYPE_BY_PATH[t], PREFIXED if p == "PREFIXED" else LITERAL, n) for t, p, n in changed}
        keep = [b for b in self._bindings if (b.resource_type, b.pattern_type, b.name) not in keys]
        for resource, entries in changed.items():
            keep += from_stored(resource, entries)
        self.replace(keep)

    def set_resource(self, resource: tuple[str, str, str], entries: list[dict]) -> None:
        self.set_resources({resource: entries})

    def replace(self, bindings: Iterable[AclBinding]) -> None:
        """Swap in a whole new ACL set (a store load or a change notification)."""
        new = frozenset(bindings)
        if new == self._bindings:
            return
        index = _build(new)
        self._bindings, self._index, self._cache = new, index, {}

    def describe(self, f: AclFilter) -> list[AclBinding]:
        return sorted(b for b in self._bindings if f.matches(b))

    # ---- decisions ----

    def authorize(self, principal: str, host: str, operation: int, resource_type: int, name: str) -> bool:
        key = (principal, host, operation, resource_type, name)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        result = self._decide(principal, host, operation, resource_type, name)
        cache = self._cache
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = result
        return result

    def _matching(self, resource_type: int, name: str):
        ix = self._index.get(resource_type)
        if ix is None:
            return ()
        found = []
        lit = ix.literal.get(name)
        if lit:
            found.append(lit)
        if ix.wildcard:
            found.append(ix.wildcard)
        if ix.prefix_lengths:
            n = len(name)
            pre = ix.prefixed
            for length in ix.prefix_lengths:
                if length > n:
                    break
                hit = pre.get(name[:length])
                if hit:
                    found.append(hit)
        return found

    def _decide(self, principal, host, operation, resource_type, name) -> bool:
        if principal in self.super_users:
            return True
        groups = self._matching(resource_type, name)
        if not groups:
            return self.allow_if_no_acl
        implied = _IMPLIED_BY.get(operation)
        allowed = False
        for group in groups:
            for b in group:
                if b.principal != principal and b.principal != WILDCARD_PRINCIPAL:
                    continue
                if b.host != host and b.host != WILDCARD:
                    continue
                if b.permission == DENY:
                    if b.operation == operation or b.operation == ALL:
                        return False
                elif not allowed:
                    if b.operation == operation or b.operation == ALL or (implied and b.operation in implied):
                        allowed = True
        return allowed

    # ---- what the API handlers ask (ctx: anything with .principal and .peer_host) ----

    def allows(self, ctx, operation: int, resource_type: int, name: str) -> bool:
        return self.authorize(ctx.principal, ctx.peer_host, operation, resource_type, name)

    def allows_cluster(self, ctx, operation: int) -> bool:
        return self.authorize(ctx.principal, ctx.peer_host, operation, CLUSTER, CLUSTER_NAME)

    def denied(self, ctx, operation: int, resource_type: int, names: Iterable[str]) -> set[str]:
        """The names among these the principal may not operate on."""
        p, h, a = ctx.principal, ctx.peer_host, self.authorize
        return {n for n in names if n is not None and not a(p, h, operation, resource_type, n)}

    def fetch_denials(self, ctx, from_follower: bool, wanted, version: int, name_of):
        """Topics a Fetch may not read: a follower needs CLUSTER_ACTION (else
        every partition is refused), a consumer READ on each topic."""
        if from_follower:
            return () if self.allows_cluster(ctx, CLUSTER_ACTION) else Everything()
        return self.denied(ctx, READ, TOPIC, (name_of(tid) if version >= 13 else key for key, tid, _ in wanted))

    def produce_denials(self, ctx, txn_id, topics, transactional):
        """{topic: error code} for what a Produce may not write: a request
        with transactional batches (transactional(topics)) needs WRITE on its
        transactional id, else the whole request is refused
        (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); each topic without WRITE gets
        TOPIC_AUTHORIZATION_FAILED. None when all is allowed."""
        if txn_id is not None and not self.allows(ctx, WRITE, TRANSACTIONAL_ID, txn_id) and transactional(topics):
            return Everything(Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        bad = self.denied(ctx, WRITE, TOPIC, (name for name, _ in topics))
        return dict.fromkeys(bad, Errors.TOPIC_AUTHORIZATION_FAILED) if bad else None

    def metadata_view(self, ctx, names, all_topics: bool, topic_ops: bool, cluster_ops: bool):
        """(names to answer, names refused, topic ops, cluster ops) for a
        Metadata request: topics without DESCRIBE are left out of an
        all-topics answer and refused when named; the authorized-operations
        fields, when asked, are this principal's (topic ops: a function of the
        name)."""
        refused = self.denied(ctx, DESCRIBE, TOPIC, names)
        if all_topics and refused:
            names, refused = [n for n in names if n not in refused], ()
        p, h = ctx.principal, ctx.peer_host
        t_ops = (lambda name: self.authorized_operations(p, h, TOPIC, name)) if topic_ops else NOT_ASKED
        c_ops = self.cluster_operations(ctx) if cluster_ops else NOT_ASKED
        return names, refused, t_ops, c_ops

    def cluster_operations(self, ctx) -> int:
        """The cluster's authorized-operations bits: 0 without DESCRIBE on
        it (Kafka's Metadata and DescribeCluster answers)."""
        if not self.allows_cluster(ctx, DESCRIBE):
            return 0
        return self.authorized_operations(ctx.principal, ctx.peer_host, CLUSTER, CLUSTER_NAME)

    def may_create_topic(self, ctx, name: str) -> bool:
        """CREATE on the cluster, else on the topic (CreateTopics, auto-creation)."""
        return self.allows_cluster(ctx, CREATE) or self.allows(ctx, CREATE, TOPIC, name)

    def authorized_operations(self, principal: str, host: str, resource_type: int, name: str) -> int:
        """The authorized-operations bitfield (bit n = operation n) of
        Metadata, DescribeGroups and DescribeCluster."""
        bits = 0
        for op in SUPPORTED_OPERATIONS[resource_type]:
            if self.authorize(principal, host, op, resource_type, name):
                bits |= 1 << op
        return bits

    def any_allowed(self, principal: str, host: str, operation: int, resource_type: int) -> bool:
        """Whether some resource of this type could be allowed to the
        principal (Kafka's authorizeByResourceType: InitProducerId without a
        transactional id passes with WRITE on any topic). Deny rules on a
        LITERAL '*' veto; other denies only cover their own resources."""
        if principal in self.super_users:
            return True
        ix = self._index.get(resource_type)
        if ix is None:
            return self.allow_if_no_acl
        for b in ix.wildcard:
            if b.permission == DENY and b.operation in (operation, ALL) and \
                    b.principal in (principal, WILDCARD_PRINCIPAL) and b.host in (host, WILDCARD):
                return False
        for group in (ix.wildcard, *ix.literal.values(), *ix.prefixed.values()):
            for b in group:
                if b.permission == ALLOW and b.operation in (operation, ALL) and \
                        b.principal in (principal, WILDCARD_PRINCIPAL) and b.host in (host, WILDCARD):
                    if self.authorize(principal, host, operation, resource_type, b.name) or b.pattern_type == PREFIXED:
                        return True
        return False


class Everything:
    """Every name: the answer when a whole request is refused."""
    __slots__ = ("code",)

    def __init__(self, code: int = 0):
        self.code = code

    def __contains__(self, name) -> bool:
        return True

    def get(self, name, default=None) -> int:
        return self.code


def parse_super_users(text: str) -> list[str]:
    return [s.strip() for s in (text or "").split(";") if s.strip()]
