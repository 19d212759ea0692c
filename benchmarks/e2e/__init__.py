"""End-to-end load of the whole stack (``make bench-e2e``) and the harness the fault tests (``tests/chaos``)
share: real servers, the services as processes, sequence-numbered CAN and MQTT load, counting in InfluxDB."""
