"""The stack as a whole: Kafka topic layout (``telestack topics``), the native demo (``telestack demo``),
live values in a terminal (``telestack tail``) and Kafka consumer lag as metrics (``telestack kafka-lag``)."""
