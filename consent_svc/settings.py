"""All settings, from the environment, in one frozen Struct."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

PREFIX = "CONSENT_SVC_"
DEFAULT_POLICIES_DIR = str(Path(__file__).resolve().parent.parent / "policies")


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    database_url: str | None = None
    """PostgreSQL URL; when unset, an embedded server runs under ``data_dir``."""
    data_dir: str = "./var"
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    master_key: str | None = None
    """Base64 of 32 bytes: wraps every subject's data key. Generated into ``data_dir`` when embedded."""
    lookup_secret: str | None = None
    """Base64 of 32 bytes: the HMAC key of identifier look-up hashes. Generated like ``master_key``."""
    audit_signing_key: str | None = None
    """Base64 of a 32-byte Ed25519 seed: signs audit checkpoints. Generated into ``data_dir`` when unset."""
    audit_checkpoint_seconds: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 10
    """How often a signed checkpoint is written while the log grows (exports and proofs sign one at once)."""
    mode: Literal["local", "production"] | None = None
    """`production` refuses what is only safe on one's own machine (plain-http webhook URLs). Default: `local`
    on the embedded PostgreSQL, `production` with a DATABASE_URL."""
    webhook_allow_private_networks: bool = False
    """Let outbound webhooks reach loopback, private and link-local addresses (local tests only)."""
    webhook_retry_hours: Annotated[float, msgspec.Meta(gt=0, le=720)] = 24
    """How long a failing delivery is retried (with exponential backoff) before it is dead-lettered."""
    webhook_retry_base_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5
    """The first retry's delay; each next one doubles, up to an hour, with jitter."""
    webhook_retention_days: Annotated[int, msgspec.Meta(ge=2, le=3650)] = 30
    """How long sent (or dead) events and their delivery records are kept, for listing and replay."""
    webhook_secret_grace_hours: Annotated[int, msgspec.Meta(ge=0, le=720)] = 24
    """After a source's secret is rotated, how long the old one still verifies."""
    request_duplicate_window_seconds: Annotated[int, msgspec.Meta(ge=0, le=86400)] = 600
    """A request of the same type for the same identifiers within this window answers the open one."""
    request_due_soon_days: Annotated[int, msgspec.Meta(ge=0, le=90)] = 7
    """How long before its due date a request is announced as `request.due_soon`."""
    public_code_minutes: Annotated[int, msgspec.Meta(ge=1, le=1440)] = 30
    """How long a public request's verification code (and an export link) stays valid."""
    public_code_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    """Wrong codes before a public request's verification is locked."""
    public_rate_per_address: Annotated[int, msgspec.Meta(ge=1)] = 20
    """Public submissions per client address per hour."""
    public_rate_per_identifier: Annotated[int, msgspec.Meta(ge=1)] = 5
    """Public submissions per identifier per hour."""
    brand_name: Annotated[str, msgspec.Meta(max_length=100)] = "Example Company"
    """The business, as the privacy center names it."""
    brand_contact: Annotated[str, msgspec.Meta(max_length=200)] = "privacy@example.com"
    """How customers reach the privacy team (shown on every privacy center page)."""
    brand_notice_url: Annotated[str, msgspec.Meta(max_length=500)] = "https://example.com/privacy-notice"
    """The privacy notice the privacy center links to."""
    brand_notice_version: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "1"
    """The version of the privacy notice the preference center shows: recorded with every choice made there."""
    brand_color: Annotated[str, msgspec.Meta(pattern=r"^#[0-9a-fA-F]{6}$")] = "#1d4f91"
    """The accent colour of both sites (links, buttons); keep it dark enough for white text (WCAG AA)."""
    policies_dir: str = DEFAULT_POLICIES_DIR
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 16 * 1024 * 1024
    clock_skew_seconds: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 300
    idempotency_ttl_hours: Annotated[int, msgspec.Meta(ge=1)] = 24
    pool_min_size: Annotated[int, msgspec.Meta(ge=0)] = 2
    pool_max_size: Annotated[int, msgspec.Meta(ge=1)] = 10
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, str] = {
            key[len(PREFIX) :].lower(): value for key, value in environ.items() if key.startswith(PREFIX)
        }
        if environ.get("DATABASE_URL"):
            values["database_url"] = environ["DATABASE_URL"]
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None

    @property
    def embedded(self) -> bool:
        return not self.database_url

    @property
    def production(self) -> bool:
        return self.mode == "production" or (self.mode is None and not self.embedded)


def _one_line(exc: msgspec.ValidationError) -> str:
    """'Expected `int`, got `str` - at `$.port`' -> 'CONSENT_SVC_PORT: expected `int`, got `str`'."""
    message = str(exc)
    if " - at `$." in message:
        reason, _, path = message.rpartition(" - at `$.")
        field = path.rstrip("`")
        name = "DATABASE_URL" if field == "database_url" else PREFIX + field.upper()
        return f"invalid setting {name}: {reason[0].lower()}{reason[1:]}"
    if message.startswith("Object contains unknown field"):
        field = message.split("`")[1]
        return f"unknown setting {PREFIX}{field.upper()}"
    return f"invalid settings: {message}"
