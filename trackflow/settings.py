"""Settings: one frozen object per process, read once from ``TRACKFLOW_*`` env vars.

Every component receives the ``Settings`` it needs explicitly; nothing reads the
environment anywhere else.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "load_settings"]


class SettingsError(Exception):
    """A ``TRACKFLOW_*`` setting is missing or invalid; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACKFLOW_", frozen=True, extra="ignore")

    # -- shared ------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: SecretStr = SecretStr("postgresql://trackflow@127.0.0.1:54329/trackflow")
    topic_partitions: int = Field(default=6, ge=1, le=1024)
    topic_replication_factor: int = Field(default=1, ge=1, le=16)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"

    # -- gateway -----------------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8686, ge=1, le=65535)
    gateway_workers: int = Field(default=1, ge=1, le=64)
    gateway_inline: bool = False
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    max_events_per_request: int = Field(default=500, ge=1)
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    retry_after_seconds: int = Field(default=5, ge=1)

    trusted_proxies: str = ""  # comma-separated IPs/CIDRs whose X-Forwarded-For is believed

    # -- enrichment ----------------------------------------------------------
    geoip_city_db: Path | None = None  # default: GeoLite2-City from maxminddb-geolite2
    geoip_asn_db: Path | None = None
    geoip_anonymous_db: Path | None = None
    hash_salt: SecretStr = SecretStr("")

    # -- worker ------------------------------------------------------------
    worker_host: str = "127.0.0.1"
    worker_port: int = Field(default=8687, ge=1, le=65535)
    worker_id: str = "trackflow-processors"
    store_batch_size: int = Field(default=500, ge=1)
    store_batch_seconds: float = Field(default=0.1, gt=0)
    store_retry_max_seconds: float = Field(default=10.0, gt=0)

    # -- workflows and webhooks ----------------------------------------------
    # hosts, addresses or CIDR networks webhooks may reach although they are private/loopback
    webhook_allow_hosts: str = ""
    # secrets that webhook headers reference as ${secret:NAME}: a JSON object NAME -> value
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    webhook_retry_base_seconds: float = Field(default=1.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=600.0, gt=0)
    webhook_max_in_flight: int = Field(default=100, ge=1)
    workflow_max_emit_depth: int = Field(default=3, ge=0, le=10)

    # -- identity (identify and merge stages) ---------------------------------
    session_timeout_minutes: float = Field(default=30.0, gt=0)
    identity_trait_fields: str = "email:email,phone:phone"  # name[:email|phone|text[:type]]
    identity_hashed_types: str = ""  # comma-separated identifier types stored hashed
    identity_blocked_values: str = ""  # comma-separated, blocked besides the built-in ones
    identity_default_country_code: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,2}$")
    max_profiles_per_merge: int = Field(default=10, ge=2)
    allow_user_id_conflict: bool = False

    # -- local stack (`trackflow up`) ---------------------------------------
    state_dir: Path = Path(".trackflow")
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    postgres_port: int = Field(default=54329, ge=1, le=65535)
    kafka_version: str = "4.1.1"

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        for entry in (p.strip() for p in value.split(",")):
            if entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(
                        f"{entry!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8)"
                    ) from None
        return value

    @field_validator("identity_trait_fields")
    @classmethod
    def _trait_fields_are_valid(cls, value: str) -> str:
        for entry in (f.strip() for f in value.split(",")):
            name, _, rest = entry.partition(":")
            kind = rest.partition(":")[0] or "text"
            if not name or kind not in ("email", "phone", "text"):
                raise ValueError(
                    f"{entry!r} is not name[:kind[:type]] with kind email, phone or text"
                    " (e.g. 'email:email,phone:phone')"
                )
        return value

    def trusted_proxy_list(self) -> list[str]:
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    def webhook_allow_list(self) -> list[str]:
        return [h.strip() for h in self.webhook_allow_hosts.split(",") if h.strip()]

    def dsn(self) -> str:
        """The database URL as a plain string, for the PostgreSQL client."""
        return self.database_url.get_secret_value()


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides winning.

    Raises ``SettingsError`` naming each bad variable (``TRACKFLOW_GATEWAY_PORT: ...``).
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            f"TRACKFLOW_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            f" (got {err.get('input')!r})"
            for err in exc.errors()
        ]
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
