"""Settings for every Thuis process, read from `THUIS_`-prefixed environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """The settings are not acceptable; the message names each problem without repeating any value."""

    def __init__(self, err: ValidationError, *, prefix: str = "THUIS_") -> None:
        problems = []
        for error in err.errors():
            variable = f"{prefix}{'_'.join(str(part) for part in error['loc']).upper()}"
            if error["type"] == "missing":
                problems.append(f"{variable} is not set")
            else:
                where = f"{variable}: " if error["loc"] else ""
                problems.append(where + error["msg"].removeprefix("Value error, "))
        super().__init__("configuration refused: " + "; ".join(problems))


SettingsType = TypeVar("SettingsType", bound=BaseSettings)


def load_settings(cls: type[SettingsType], **overrides: Any) -> SettingsType:
    """Read settings of a class, with overrides (None: not given); SettingsError names problems, never values.

    pydantic's own message repeats the input, database URL, passwords and keys all: it must not reach a log.
    """
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return cls(**given)
    except ValidationError as err:
        raise SettingsError(err, prefix=str(cls.model_config.get("env_prefix", ""))) from None


def _ledger_file(path: Path) -> Path:
    if str(path) in {"", "."} or path.is_dir():
        raise ValueError("must name the erasure ledger's file (beside the keyring), not a folder")
    return path


# Where the erasure ledger is (THUIS_ERASURE_LEDGER_FILE): every process that serves data checks its
# database against it, and refuses one that lacks an erasure (privacy/keys/ledger.py).
ErasureLedgerFile = Annotated[Path, AfterValidator(_ledger_file)]


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

    @classmethod
    def load(cls, *, database_url: str | None = None, **overrides: Any) -> Self:
        """Read the settings; a URL or value from the command line overrides the environment.

        Overrides pass through the same validation, so a placeholder password on the command line is refused
        as it is in THUIS_DATABASE_URL. Raise SettingsError naming each problem, and never the values:
        pydantic's own message would repeat the input, database URL and all.
        """
        return load_settings(cls, database_url=database_url, **overrides)


class MqttClientSettings(BaseSettings):
    """How a process reaches the broker: mutual TLS with its own certificate."""

    model_config = SettingsConfigDict(env_prefix="THUIS_MQTT_", extra="ignore")

    host: str = "localhost"
    port: int = 8883
    ca_file: Path
    cert_file: Path
    key_file: Path
    keepalive_s: int = 30
