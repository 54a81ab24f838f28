"""A lean MQTT v5 subscriber: codec, connection and session, with no import from the rest of Thuis."""
