"""The ingest service: MQTT over mutual TLS in, batched TimescaleDB writes out."""
