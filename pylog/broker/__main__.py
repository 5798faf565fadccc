"""`python -m pylog.broker ...`: the same as `pylog broker ...`."""
import argparse
import sys

from .cli import add_broker_arguments, run_broker

if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="pylog broker", description="run a Kafka-protocol broker")
    add_broker_arguments(p)
    sys.exit(run_broker(p.parse_args()))
