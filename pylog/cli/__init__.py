"""The Kafka-client sub-commands of `pylog`, modelled on Kafka's shell tools.

    topics.py        pylog topics create|list|describe|delete|alter   (kafka-topics)
    produce.py       pylog produce                                    (kafka-console-producer)
    consume.py       pylog consume                                    (kafka-console-consumer)
    groups.py        pylog groups list|describe|reset-offsets|delete  (kafka-consumer-groups)
    share_groups.py  pylog share-groups list|describe|reset-offsets|delete  (kafka-share-groups)
    perf_produce.py  pylog perf produce                               (kafka-producer-perf-test)
    perf_consume.py  pylog perf consume                               (kafka-consumer-perf-test)
    cluster.py       pylog cluster up|status|down                     (a local cluster of processes)
    reassign.py      pylog reassign                                   (kafka-reassign-partitions)
    transactions.py  pylog transactions list|describe|describe-producers|abort (kafka-transactions)
    dump_log.py      pylog dump-log                                   (kafka-dump-log)
    log_decoders.py  its --offsets-decoder / --transaction-log-decoder
    log_dirs.py      pylog log-dirs --describe                        (kafka-log-dirs)
    leader_election.py pylog leader-election                          (kafka-leader-election)
    get_offsets.py   pylog get-offsets                                (kafka-get-offsets)
    delete_records.py pylog delete-records                            (kafka-delete-records)
    verifiable_producer.py pylog verifiable-producer                  (Kafka's VerifiableProducer)
    verifiable_consumer.py pylog verifiable-consumer                  (Kafka's VerifiableConsumer)
    api_versions.py  pylog cluster api-versions                       (kafka-broker-api-versions)
    java_compat.py   Java's HashMap order and exception names, as the Java tools print them
    acls.py          pylog acls --add|--remove|--list                 (kafka-acls)
    configs.py       pylog configs --entity-type users --alter|--describe (kafka-configs, users)
    common.py        --bootstrap-server, k=v options, errors -> exit codes
    (pylog/console)  pylog console                                    (the web console)

Each add_*_parser(subparsers) adds its parser(s); every leaf parser sets
`tool` (a function of the parsed args returning an exit code), which
pylog.__main__ runs through common.run_tool.
"""
from ..console.cli import add_console_parser
from .acls import add_acls_parser
from .cluster import add_cluster_parser
from .common import run_tool
from .configs import add_configs_parser
from .consume import add_consume_parser
from .delete_records import add_delete_records_parser
from .dump_log import add_dump_log_parser
from .groups import add_groups_parser
from .get_offsets import add_get_offsets_parser
from .leader_election import add_leader_election_parser
from .log_dirs import add_log_dirs_parser
from .perf import add_perf_parser
from .produce import add_produce_parser
from .reassign import add_reassign_parser
from .share_groups import add_share_groups_parser
from .topics import add_topics_parser
from .transactions import add_transactions_parser
from .verifiable_consumer import add_verifiable_consumer_parser
from .verifiable_producer import add_verifiable_producer_parser

__all__ = ["add_client_commands", "run_tool"]


def add_client_commands(sub) -> None:
    add_topics_parser(sub)
    add_produce_parser(sub)
    add_consume_parser(sub)
    add_groups_parser(sub)
    add_share_groups_parser(sub)
    add_perf_parser(sub)
    add_cluster_parser(sub)
    add_reassign_parser(sub)
    add_transactions_parser(sub)
    add_dump_log_parser(sub)
    add_log_dirs_parser(sub)
    add_leader_election_parser(sub)
    add_get_offsets_parser(sub)
    add_delete_records_parser(sub)
    add_verifiable_producer_parser(sub)
    add_verifiable_consumer_parser(sub)
    add_console_parser(sub)
    add_acls_parser(sub)
    add_configs_parser(sub)
