"""Operator configuration from the environment."""

from __future__ import annotations

from typing import Any

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
    resync_seconds: float = Field(default=30, alias="OPERATOR_RESYNC_SECONDS", gt=0)
    health_port: int = Field(default=8080, alias="OPERATOR_HEALTH_PORT")
    metrics_port: int = Field(default=9090, alias="OPERATOR_METRICS_PORT")
    peering: str | None = Field(
        default=None, alias="OPERATOR_PEERING"
    )  # a KopfPeering name; none: standalone

    @field_validator("redis_url_secret")
    @classmethod
    def _name_key(cls, value: str | None) -> str | None:
        if value is not None and value.count("/") != 1:
            raise ValueError("expected <secret name>/<key>")
        return value
