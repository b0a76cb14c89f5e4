"""Settings of the service itself, read from ``TURBOMODE_SERVE_*`` environment variables.

Everything about data, stores and signal rules comes from the platform's one
:class:`turbomode.config.Settings` (``TURBOMODE_CONFIG`` / ``TURBOMODE_<SECTION>__<FIELD>``),
so the service scores exactly as the nightly scan does; only what a long-running process adds
lives here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """Process settings of ``turbomode serve`` / the BentoML service."""

    model_config = SettingsConfigDict(env_prefix="TURBOMODE_SERVE_", extra="ignore")

    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of POST /admin/reload; unset or empty disables the endpoint "
        "(403).",
    )
    watch_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the production pointers and the data files are checked: a "
        "promotion is served at most this long after it lands.",
    )
    model_cache_size: int = Field(
        default=33, ge=1, description="Ensembles kept loaded (11 sectors × 3 horizons)."
    )
    model_threads: int = Field(
        default=1, ge=1, description="Threads per prediction call (requests run side by side)."
    )
    memo_size: int = Field(
        default=8192,
        ge=0,
        description="Predictions remembered per (symbol, horizon, feature vector); 0 turns the "
        "memo off. Entries are dropped whenever a model, the prices or the thresholds change.",
    )
    max_batch_symbols: int = Field(default=1000, ge=1)
    max_feature_rows: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(
        default=8 * 2**20,
        ge=1024,
        description="Largest request body; a larger one is a 413 before anything parses it. "
        "8 MiB holds a full /predict_features call (1,000 rows × 201 features at float64 "
        "precision, about 5 MB).",
    )
    workers: int = Field(default=1, ge=1, description="BentoML worker processes.")
    threads: int = Field(default=2, ge=1, description="Request threads per worker.")
    scan_file: Path | None = Field(
        default=None,
        description="The scan document served by /signals (default: "
        "<data_dir>/scans/latest_scan.json).",
    )
    health_cache_s: float = Field(
        default=2.0, ge=0, description="How long a readiness answer is reused (probes are cheap)."
    )

    @field_validator("admin_token")
    @classmethod
    def _empty_token_is_none(cls, token: SecretStr | None) -> SecretStr | None:
        """``TURBOMODE_SERVE_ADMIN_TOKEN=`` must disable the endpoint, not make the empty
        bearer token valid."""
        return token if token is not None and token.get_secret_value().strip() else None
