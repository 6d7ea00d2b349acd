"""Sync with the store hub over MQTT: topics and payloads, signed update bundles, transport
security. Corrections, review items, events and telemetry go up from the basket's outbox;
signed catalogue, prototype, threshold and model bundles come down."""
