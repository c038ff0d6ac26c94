"""The analytics slice's settings section (docs/analyticsapi.md): destinations, batching, delivery."""

from __future__ import annotations

from pydantic import Field

from core.settings import HttpUrl, OptionalSecret, OptionalStr, Section, env


class AnalyticsSettings(Section):
    """Where analytics events go (Mixpanel, GA4) and how the drain buffers and sends them."""

    mixpanel_api_url: HttpUrl = Field("https://api.mixpanel.com", validation_alias=env("MIXPANEL_API_URL"))
    ga4_endpoint: HttpUrl = Field("https://www.google-analytics.com/mp/collect", validation_alias=env("GA4_ENDPOINT"))
    ga4_measurement_id: OptionalStr = Field(None, validation_alias=env("GA4_MEASUREMENT_ID"))
    ga4_api_secret: OptionalSecret = Field(None, validation_alias=env("GA4_API_SECRET"))
    mixpanel_batch_size: int = Field(2000, validation_alias=env("HDXRQ_ANALYTICS_MIXPANEL_BATCH_SIZE"), ge=1, le=2000)
    ga4_batch_size: int = Field(25, validation_alias=env("HDXRQ_ANALYTICS_GA4_BATCH_SIZE"), ge=1, le=25)
    http_timeout_sec: float = Field(10.0, validation_alias=env("HDXRQ_ANALYTICS_HTTP_TIMEOUT_SEC"), gt=0)
    retry_base_sec: float = Field(1.0, validation_alias=env("HDXRQ_ANALYTICS_RETRY_BASE_SEC"), gt=0)
    retry_max_sec: float = Field(300.0, validation_alias=env("HDXRQ_ANALYTICS_RETRY_MAX_SEC"), gt=0)
    max_attempts: int = Field(20, validation_alias=env("HDXRQ_ANALYTICS_MAX_ATTEMPTS"), ge=1)
    lease_sec: float = Field(60.0, validation_alias=env("HDXRQ_ANALYTICS_LEASE_SEC"), gt=0)
    tick_sec: float = Field(60.0, validation_alias=env("HDXRQ_ANALYTICS_TICK_SEC"), gt=0)
    drain_budget_sec: float = Field(120.0, validation_alias=env("HDXRQ_ANALYTICS_DRAIN_BUDGET_SEC"), gt=0)
    drain_idle_sec: float = Field(1.0, validation_alias=env("HDXRQ_ANALYTICS_DRAIN_IDLE_SEC"), ge=0)
    linger_ms: int = Field(500, validation_alias=env("HDXRQ_ANALYTICS_LINGER_MS"), ge=0, le=60000)
