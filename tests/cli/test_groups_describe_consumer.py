"""`pylog groups describe` of a KIP-848 consumer group: Kafka 4's kafka-consumer-groups.sh
layouts (ConsumerGroupCommand printMembers / printStates), checked character by character on
descriptions as the client builds them from ConsumerGroupDescribe. The end-to-end run against a
broker serving the API is in tests/groups (with the KIP-848 coordinator)."""
from __future__ import annotations

import argparse

from pylog.cli import groups as cli
from pylog.client.client import BrokerMetadata, GroupDescription, GroupMember


def member(member_id, epoch, current, target, instance=None, host="/10.0.0.7", client="app", upgraded=None):
    return GroupMember(member_id, instance, client, host, b"", b"", member_epoch=epoch, partitions=current,
                       target_partitions=target, upgraded=upgraded)


def group(members, state="Stable", assignor="uniform", epoch=7, target_epoch=7):
    return GroupDescription("orders", state, "consumer", assignor, members, BrokerMetadata(2, "b2.local", 9092),
                            group_type="consumer", group_epoch=epoch, target_assignment_epoch=target_epoch)


def args(verbose=False):
    return argparse.Namespace(verbose=verbose, members=True, state=False)


A = member("m-aaaaaaaaaaaaaaaaaaaa", 7, [("t", 0), ("t", 1), ("u", 3)], [("t", 0), ("t", 1), ("u", 3)])
B = member("m-b", 6, [("t", 2)], [("t", 2), ("u", 1), ("u", 0)], client="app-2")


def test_members(capsys):
    assert cli._describe_members(args(), group([A, B]))
    out = capsys.readouterr().out
    # widths: GROUP 15, CONSUMER-ID the longest id (22), HOST 15, CLIENT-ID 15, #PARTITIONS 15
    assert out == (
        "\n"
        "GROUP           CONSUMER-ID            HOST            CLIENT-ID       #PARTITIONS\n"
        "orders          m-aaaaaaaaaaaaaaaaaaaa /10.0.0.7       app             3\n"
        "orders          m-b                    /10.0.0.7       app-2           1\n")


def test_members_verbose_has_epochs_and_both_assignments(capsys):
    assert cli._describe_members(args(verbose=True), group([A, B]))
    lines = capsys.readouterr().out.split("\n")
    assert lines[1] == ("GROUP           CONSUMER-ID            HOST            CLIENT-ID       #PARTITIONS     "
                        "CURRENT-EPOCH   CURRENT-ASSIGNMENT   TARGET-EPOCH    TARGET-ASSIGNMENT")
    assert lines[2] == ("orders          m-aaaaaaaaaaaaaaaaaaaa /10.0.0.7       app             3               "
                        "7               t:0,1;u:3            7               t:0,1;u:3")
    # a member still reconciling: its epoch behind the target's, its target larger
    assert lines[3] == ("orders          m-b                    /10.0.0.7       app-2           1               "
                        "6               t:2                  7               t:2;u:0,1")


def test_members_static_and_empty_assignment(capsys):
    static = member("m-s", 7, [], [], instance="i-1")
    assert cli._describe_members(args(verbose=True), group([static, B]))
    lines = capsys.readouterr().out.split("\n")
    assert lines[1].split() == ["GROUP", "CONSUMER-ID", "GROUP-INSTANCE-ID", "HOST", "CLIENT-ID", "#PARTITIONS",
                                "CURRENT-EPOCH", "CURRENT-ASSIGNMENT", "TARGET-EPOCH", "TARGET-ASSIGNMENT"]
    assert lines[2].split() == ["orders", "m-s", "i-1", "/10.0.0.7", "app", "0", "7", "-", "7", "-"]
    # Kafka prints an empty GROUP-INSTANCE-ID for a dynamic member
    assert lines[3].startswith("orders          m-b             " + " " * 17 + " /10.0.0.7")


def test_members_of_a_group_mixing_protocols_show_upgraded(capsys):
    classic = member("m-c", None, [("t", 0)], [], upgraded=False)
    modern = member("m-n", 7, [("t", 1)], [("t", 1)], upgraded=True)
    assert cli._describe_members(args(verbose=True), group([classic, modern]))
    lines = capsys.readouterr().out.split("\n")
    assert lines[1].split()[-1] == "UPGRADED"
    assert lines[2].split()[-5:] == ["-", "t:0", "7", "-", "false"]
    assert lines[3].split()[-5:] == ["7", "t:1", "7", "t:1", "true"]


def test_state(capsys):
    a = argparse.Namespace(verbose=False)
    assert cli._describe_state(a, group([A, B]))
    assert capsys.readouterr().out == (
        "\n"
        "GROUP           COORDINATOR (ID)          ASSIGNMENT-STRATEGY  STATE                #MEMBERS\n"
        "orders          b2.local:9092  (2)        uniform              Stable               2\n")


def test_state_verbose_has_the_epochs(capsys):
    a = argparse.Namespace(verbose=True)
    assert cli._describe_state(a, group([A, B], state="Reconciling", epoch=9, target_epoch=8))
    captured = capsys.readouterr()
    assert captured.out == (
        "\n"
        "GROUP           COORDINATOR (ID)          ASSIGNMENT-STRATEGY  STATE                GROUP-EPOCH     "
        "TARGET-ASSIGNMENT-EPOCH   #MEMBERS\n"
        "orders          b2.local:9092  (2)        uniform              Reconciling          9               "
        "8                         2\n")
    assert "Warning: Consumer group 'orders' is rebalancing." in captured.err


def test_empty_consumer_group_state_is_noted_and_shown(capsys):
    a = argparse.Namespace(verbose=False)
    assert cli._describe_state(a, group([], state="Empty", assignor=""))
    captured = capsys.readouterr()
    assert "Consumer group 'orders' has no active members." in captured.err
    assert captured.out.split("\n")[2].split() == ["orders", "b2.local:9092", "(2)", "-", "Empty", "0"]
