"""Consumer groups: the group coordinator, its APIs, and __consumer_offsets."""
