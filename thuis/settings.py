"""Settings for every Thuis process, read from `THUIS_`-prefixed environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"changethis", "changeme", "password", "postgres", "secret", "thuis"})


class ThuisSettings(BaseSettings):
    """Settings shared by every process: where it runs and which database it uses."""

    model_config = SettingsConfigDict(env_prefix="THUIS_", extra="ignore")

    environment: Literal["development", "test", "production"] = "production"
    database_url: SecretStr = Field(description="postgresql:// URL of the TimescaleDB database")

    @model_validator(mode="after")
    def _refuse_placeholder_password(self) -> ThuisSettings:
        password = urlsplit(self.database_url.get_secret_value()).password
        if self.environment == "production" and password in PLACEHOLDER_SECRETS:
            raise ValueError("THUIS_DATABASE_URL carries a placeholder password; set a real secret")
        return self


class MqttClientSettings(BaseSettings):
    """How a process reaches the broker: mutual TLS with its own certificate."""

    model_config = SettingsConfigDict(env_prefix="THUIS_MQTT_", extra="ignore")

    host: str = "localhost"
    port: int = 8883
    ca_file: Path
    cert_file: Path
    key_file: Path
    keepalive_s: int = 30
