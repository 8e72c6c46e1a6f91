"""Operator configuration from the environment."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from magent2.settings import CsvList


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    namespaces: CsvList = Field(default_factory=list, alias="OPERATOR_NAMESPACES")  # empty: all
    worker_image: str = Field(default="magent2/magent2-worker:dev", alias="WORKER_IMAGE", min_length=1)
    image_pull_policy: str = Field(default="IfNotPresent", alias="WORKER_IMAGE_PULL_POLICY")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    redis_url_secret: str | None = Field(default=None, alias="REDIS_URL_SECRET")  # "name/key"
    bus_prefix: str = Field(default="", alias="BUS_PREFIX")
    default_resources: dict[str, Any] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        alias="WORKER_DEFAULT_RESOURCES",
    )
    # the operator's own view of the bus, for queue health in each Agent's status (unset: REDIS_URL)
    queue_redis_url: str | None = Field(default=None, alias="QUEUE_REDIS_URL")
    queue_seconds: float = Field(default=10, alias="OPERATOR_QUEUE_SECONDS", gt=0)
    # what KEDA's redis-streams scaler connects to for spec.autoscaling (host:port, and the
    # password's Secret as "name/key"); unset address: REDIS_URL's host and port
    keda_redis_address: str | None = Field(default=None, alias="KEDA_REDIS_ADDRESS")
    keda_redis_password_secret: str | None = Field(default=None, alias="KEDA_REDIS_PASSWORD_SECRET")
    resync_seconds: float = Field(default=30, alias="OPERATOR_RESYNC_SECONDS", gt=0)
    health_port: int = Field(default=8080, alias="OPERATOR_HEALTH_PORT")
    metrics_port: int = Field(default=9090, alias="OPERATOR_METRICS_PORT")
    peering: str | None = Field(
        default=None, alias="OPERATOR_PEERING"
    )  # a KopfPeering name; none: standalone

    @property
    def bus_url(self) -> str | None:
        return self.queue_redis_url or self.redis_url

    @property
    def keda_address(self) -> str | None:
        if self.keda_redis_address:
            return self.keda_redis_address
        if self.redis_url:
            parsed = urlsplit(self.redis_url)
            return f"{parsed.hostname}:{parsed.port or 6379}" if parsed.hostname else None
        return None

    @field_validator("redis_url_secret", "keda_redis_password_secret")
    @classmethod
    def _name_key(cls, value: str | None) -> str | None:
        if value is not None and value.count("/") != 1:
            raise ValueError("expected <secret name>/<key>")
        return value
