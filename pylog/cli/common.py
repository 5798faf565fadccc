"""What every client sub-command shares: the --bootstrap-server option,
k=v option parsing, and turning errors into a message and an exit code."""
from __future__ import annotations

import argparse
import os
import re
import sys

from ..client import Client
from ..client.errors import error_name
from ..errors import PylogError
from ..protocol.error_codes import Errors
from ..protocol.errors import ProtocolError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

__all__ = [
    "add_command_config",
    "COMMON_CLIENT_PROPERTIES",
    "DEFAULT_BOOTSTRAP",
    "RawHelp",
    "acks_value",
    "add_bootstrap",
    "apply_client_properties",
    "client_properties",
    "key_value",
    "open_client",
    "client_security",
    "parse_bool",
    "properties",
    "run_tool",
]


class RawHelp(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-wrapped descriptions as written; append "(default: X)"
    to an option's help when it has a real default (not None/False/[])."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if action.option_strings and "%(default)" not in text and default not in (
                None, False, [], argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def add_bootstrap(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap-server", default=DEFAULT_BOOTSTRAP, metavar="HOST:PORT[,...]",
                   help="broker(s) to connect to first")
    p.add_argument("--client-id", default="pylog", help="client_id sent in every request header")
    p.add_argument("--request-timeout-ms", type=int, default=30000,
                   help="socket timeout of every request")


def _security_protocol(value: str) -> str:
    if value.upper() not in ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"):
        raise argparse.ArgumentTypeError("not a security protocol (PLAINTEXT, SASL_PLAINTEXT, SSL, SASL_SSL)")
    return value.upper()


# Kafka client keys every tool honours: key -> (args attribute, converter).
COMMON_CLIENT_PROPERTIES = {
    "bootstrap.servers": ("bootstrap_server", str),
    "client.id": ("client_id", str),
    "request.timeout.ms": ("request_timeout_ms", int),
    "security.protocol": ("security_protocol", _security_protocol),
    # SASL (pylog/client/sasl.py): librdkafka's username/password keys or
    # the Java client's JAAS line.
    "sasl.mechanism": ("sasl_mechanism", str),
    "sasl.username": ("sasl_username", str),
    "sasl.password": ("sasl_password", str),
    "sasl.jaas.config": ("sasl_jaas_config", str),
}


def client_properties(files, pairs) -> dict[str, str]:
    """Kafka client settings as its tools take them: properties files
    (--consumer.config, --producer.config, --command-config), then KEY=VALUE
    pairs (--consumer-property, ...), later ones winning. Security keys
    (security.protocol, sasl.*, ssl.*: pylog/client/security.py) are checked
    when the tool connects (client_security); an ssl.* or sasl.* key pylog's
    client does not honour is refused here, by name: a client told to use
    what it lacks must not silently talk otherwise."""
    from ..broker.config import read_properties
    from ..client.security import CLIENT_TLS_KEYS
    props: dict[str, str] = {}
    for path in files or ():
        try:
            props.update(read_properties(path))
        except OSError as e:
            raise SystemExit(f"cannot read the client config file {path}: {e.strerror}") from None
    props.update(dict(pairs or ()))
    unknown = sorted(k for k in props if (k.startswith("ssl.") and k not in CLIENT_TLS_KEYS)
                     or (k.startswith("sasl.") and k not in COMMON_CLIENT_PROPERTIES))
    if unknown:
        raise SystemExit(f"security settings are not supported by pylog's tools: {', '.join(unknown)} (they take "
                         f"security.protocol, sasl.mechanism, sasl.username, sasl.password, sasl.jaas.config and "
                         f"{', '.join(sorted(CLIENT_TLS_KEYS))})")
    return props


def client_security(args) -> dict:
    """{"ssl_context": ..., "sasl": ...} from the tool's security settings
    (pylog.client.security.security_settings; None, None for PLAINTEXT)."""
    from ..client.security import security_settings
    props = {key: getattr(args, attr) for key, (attr, _conv) in COMMON_CLIENT_PROPERTIES.items()
             if (key.startswith("sasl.") or key == "security.protocol") and getattr(args, attr, None) is not None}
    props.update(getattr(args, "ssl_properties", None) or {})
    try:
        return security_settings(props)
    except ValueError as e:
        raise SystemExit(str(e)) from None


def apply_client_properties(args, props: dict, table: dict, what: str) -> None:
    """Set args' attributes from props through table (key -> (attribute,
    converter)), COMMON_CLIENT_PROPERTIES included. A key the tool does not
    honour is refused by name, never ignored. --bootstrap-server, when
    given, wins over bootstrap.servers, as in Kafka's tools."""
    table = {**COMMON_CLIENT_PROPERTIES, **table}
    for key, value in props.items():
        if key.startswith("ssl."):   # client_properties checked the key; client_security reads it
            args.ssl_properties = {**(getattr(args, "ssl_properties", None) or {}), key: value.strip()}
            continue
        if key not in table:
            raise SystemExit(f"{what} property {key!r} is not supported by this tool; it takes "
                             f"{', '.join(sorted(table))}")
        attr, conv = table[key]
        if attr == "bootstrap_server" and getattr(args, attr, None) not in (None, DEFAULT_BOOTSTRAP):
            continue
        try:
            setattr(args, attr, conv(value.strip()))
        except (ValueError, argparse.ArgumentTypeError) as e:
            raise SystemExit(f"{what} property {key}={value!r}: {e}") from None


def add_command_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--command-config", metavar="FILE",
                   help="a properties file of client settings (bootstrap.servers, client.id, "
                        "request.timeout.ms; security.protocol PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; SASL: "
                        "sasl.mechanism and sasl.username/sasl.password or sasl.jaas.config; TLS in the Java "
                        "client's keys (ssl.truststore.type=PEM, ssl.truststore.location, ssl.keystore.*) or "
                        "librdkafka's (ssl.ca.location, ssl.certificate.location, ssl.key.location, "
                        "ssl.key.password))")


def action_parsers(sub, name, help, description):
    """A sub-command with actions (`pylog topics create`, ...): returns a
    function action(name, help, description, tool) adding one action parser
    that takes --bootstrap-server and runs tool(args)."""
    p = sub.add_parser(name, help=help, description=description)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name, help, description, tool):
        a = actions.add_parser(name, help=help, description=description, formatter_class=RawHelp)
        add_bootstrap(a)
        add_command_config(a)
        a.set_defaults(tool=tool)
        return a
    return action


def open_client(args) -> Client:
    if getattr(args, "command_config", None):
        apply_client_properties(args, client_properties([args.command_config], ()), {}, "admin client")
    return Client(args.bootstrap_server, client_id=args.client_id,
                  timeout=args.request_timeout_ms / 1000.0, **client_security(args))


def verifiable_tool_settings(deprecated_file, deprecated_option: str, command_config, table: dict,
                             kw: dict, what: str) -> dict:
    """kw updated from the Kafka client settings of a system-test tool
    (verifiable-producer/-consumer): its deprecated --producer.config /
    --consumer.config or --command-config (not both, as Kafka's tools
    refuse), each key mapped through table (key -> (argument, converter));
    a key the tool does not take is refused by name."""
    if deprecated_file and command_config:
        raise SystemExit(f"Options {deprecated_option} and --command-config are mutually exclusive.")
    if deprecated_file:
        print(f"Option {deprecated_option} has been deprecated and will be removed in a future version. "
              "Use --command-config instead.")
    files = [f for f in (deprecated_file, command_config) if f]
    security = {}
    for key, value in client_properties(files, ()).items():
        if key == "security.protocol" or key.startswith(("ssl.", "sasl.")):
            security[key] = value.strip()
            continue
        if key not in table:
            raise SystemExit(f"{what} property {key!r} is not supported by this tool; it takes "
                             f"{', '.join(sorted(table))}")
        name, conv = table[key]
        kw[name] = conv(value)
    from ..client.security import security_settings
    try:
        kw.update(security_settings(security))
    except ValueError as e:
        raise SystemExit(str(e)) from None
    return kw


def topic_include_list(raw: str) -> re.Pattern:
    """Kafka's tools' IncludeList topic filter: a Java regex matched against
    the whole topic name; commas mean `|`, spaces and surrounding quotes are
    dropped (property files bring them). ValueError for a bad regex, with
    Kafka's message."""
    text = raw.strip().replace(",", "|").replace(" ", "")
    text = re.sub(r"""^["']+""", "", text)
    text = re.sub(r"""["']+$""", "", text)
    try:
        return re.compile(text)
    except re.error:
        raise ValueError(f"{text} is an invalid regex.") from None


def key_value(text: str) -> tuple[str, str]:
    """argparse type for k=v options (the value may itself contain '=')."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def properties(pairs, known: dict[str, object], what: str) -> dict[str, object]:
    """--property k=v pairs over `known` defaults; a key not in `known` is an
    error rather than silently ignored (a typo would otherwise change nothing)."""
    out = dict(known)
    for key, value in pairs or ():
        if key not in known:
            raise SystemExit(f"unknown {what} property {key!r}; known: {', '.join(sorted(known))}")
        default = known[key]
        out[key] = parse_bool(value) if isinstance(default, bool) else value
    return out


def acks_value(text: str) -> int:
    """--acks: all / -1 / 0 / 1, as Kafka's acks config."""
    if text.lower() == "all":
        return -1
    try:
        value = int(text)
    except ValueError:
        value = None
    if value not in (-1, 0, 1):
        raise argparse.ArgumentTypeError(f"acks must be all, -1, 0 or 1, not {text!r}")
    return value


def run_tool(fn, args) -> int:
    """Run a tool; a pylog or protocol error becomes one line on stderr and
    exit code 1, Ctrl-C exit code 130, a closed stdout (| head) exit 0."""
    try:
        return fn(args) or 0
    except PylogError as e:
        code = getattr(e, "error_code", -1)
        name = "" if code in (Errors.UNKNOWN_SERVER_ERROR, None) or error_name(code) in str(e) else f"{error_name(code)}: "
        print(f"Error: {name}{e}", file=sys.stderr)
        return 1
    except ProtocolError as e:
        print(f"Error: protocol: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as Unix tools
        # do, and point stdout at /dev/null so the exit-time flush cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
