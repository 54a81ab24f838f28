"""Tests of mqttv5."""
