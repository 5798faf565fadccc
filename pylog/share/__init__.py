"""Share groups (KIP-932): queues on the log. See docs/SHARE-GROUPS-STATUS.md."""
