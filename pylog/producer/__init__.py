"""pylog's Producer (network and embedded modes).

    producer.py   Producer: configuration, send/send_many/flush/close, blocking on metadata and buffer space
    sender.py     Sender: the background thread (drain, dispatch, retries, ordering, idempotence)
    transport.py  ProducerMetadata, NetworkTransport (Produce requests), EmbeddedTransport (local directory)
    transactions.py  TransactionManager: a transactional_id's client state machine (init, begin,
                  AddPartitionsToTxn, send_offsets_to_transaction, commit, abort, fencing)
The per-message work (partitioner, record encoding into open batches) is native:
bindings/producer.pyx (RecordAccumulator, ProducerBatch, DeliveryHandle).
"""
from .producer import BatchResults, FailedSend, Producer
from .transactions import (
    ConsumerGroupMetadata,
    IllegalTransactionStateError,
    ProducerFencedError,
    TransactionAbortedError,
)

__all__ = ["BatchResults", "ConsumerGroupMetadata", "FailedSend", "IllegalTransactionStateError",
           "Producer", "ProducerFencedError", "TransactionAbortedError"]
