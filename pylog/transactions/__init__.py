"""Transactions (KAFKA-NOTES §6): the transaction coordinator (coordinator.py) on the
coordinator runtime, its `__transaction_state` records (log_records.py), the marker channel
(channel.py), the wire APIs (api.py), and the transactional batches a coordinator writes
(batches.py)."""
