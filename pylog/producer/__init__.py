"""pylog's Producer (network and embedded modes).

    producer.py   Producer: configuration, send/send_many/flush/close, blocking on metadata and buffer space
    sender.py     Sender: the background thread (drain, dispatch, retries, ordering, idempotence)
    transport.py  ProducerMetadata, NetworkTransport (Produce requests), EmbeddedTransport (local directory)
The per-message work (partitioner, record encoding into open batches) is native:
bindings/producer.pyx (RecordAccumulator, ProducerBatch, DeliveryHandle).
"""
from .producer import BatchResults, FailedSend, Producer

__all__ = ["BatchResults", "FailedSend", "Producer"]
