"""telestack: devices and vehicles → Kafka → InfluxDB and Grafana, with alerts and commands back to devices."""

__version__ = "0.1.0"
