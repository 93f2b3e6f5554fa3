"""From ticket to deployable model: compact files, physically shrunk networks, sparse inference,
and the counters and timers that measure them."""
