"""The security settings every server of the suite has, beside the runtime's (`server_settings`).

This module builds on `kinship.runtime.config` and never the other way round.

Security is ON when a TLS folder (`--tls-dir`) or token keys (`--jwt-public-keys`) are
configured: every caller must then be identified and allowed, and purpose-bound RPCs
need a case id and a purpose. Without either the server runs in local plaintext mode:
it binds loopback only (anything else needs an explicit `--plaintext`), warns, and lets
every local caller in; the audit trail is written in both modes.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from kinship.audit import checkpoints
from kinship.runtime import config
from kinship.runtime.config import Setting

from . import tokens


def _paths(text: str) -> tuple[Path, ...]:
    return tuple(Path(p.strip()).expanduser() for p in text.split(",") if p.strip())


def _tri_state(text: str) -> str:
    lowered = text.strip().lower()
    if lowered == "auto":
        return "auto"
    return "true" if config.parse_bool(lowered) else "false"


def _folder_exists(value: Path | None) -> str | None:
    if value is None:
        return None
    missing = [n for n in ("ca.crt", "server.crt", "server.key") if not (Path(value) / n).is_file()]
    return f"{value} lacks {', '.join(missing)} (make them with `kinship certs init {value}`)" if missing else None


def _files_exist(value: tuple[Path, ...]) -> str | None:
    missing = [str(p) for p in value if not p.is_file()]
    return f"no such key file: {', '.join(missing)}" if missing else None


def _audit_key(value: Path | None) -> str | None:
    if value is None:
        return None
    try:
        checkpoints.load_private_key(value)
    except checkpoints.AuditKeyError as exc:
        return str(exc)
    return None


def security_settings(service: str) -> list[Setting]:
    return [
        Setting(
            "tls_dir",
            "KINSHIP_TLS_DIR",
            None,
            "folder with ca.crt, server.crt, server.key (and service.crt/.key for calls to the other services): "
            "turns on TLS with client certificates (make one with `kinship certs init`)",
            lambda t: Path(t).expanduser(),
            _folder_exists,
        ),
        Setting(
            "plaintext",
            "KINSHIP_PLAINTEXT",
            False,
            "explicitly allow plaintext on a non-loopback address (local development only; loopback is allowed with a warning)",
            config.parse_bool,
        ),
        Setting(
            "tls_require_client_cert",
            "KINSHIP_TLS_REQUIRE_CLIENT_CERT",
            True,
            "with --tls-dir, refuse the TLS handshake of a caller without a client certificate signed by ca.crt "
            "(false: callers may instead present a bearer token)",
            config.parse_bool,
        ),
        Setting(
            "jwt_public_keys",
            "KINSHIP_JWT_PUBLIC_KEYS",
            (),
            "comma-separated PEM public keys that bearer tokens (JWT, ES256/RS256) must be signed with",
            _paths,
            _files_exist,
        ),
        Setting("jwt_issuer", "KINSHIP_JWT_ISSUER", tokens.DEFAULT_ISSUER, "required `iss` claim of bearer tokens"),
        Setting(
            "jwt_audience", "KINSHIP_JWT_AUDIENCE", tokens.DEFAULT_AUDIENCE, "required `aud` claim of bearer tokens"
        ),
        Setting(
            "require_purpose",
            "KINSHIP_REQUIRE_PURPOSE",
            "auto",
            "require x-case-id and x-purpose on searches, record reads and deletions (auto: when security is on)",
            _tri_state,
        ),
        Setting(
            "audit_log",
            "KINSHIP_AUDIT_LOG",
            None,
            f"the hash-chained audit file [default <data dir>/audit/{service}.audit.jsonl]",
            lambda t: Path(t).expanduser(),
        ),
        Setting(
            "audit_sink",
            "KINSHIP_AUDIT_SINK",
            "file",
            "where audit events go: the file, JSON lines on stdout (for a cluster log pipeline), or both",
            str.lower,
            choices=("file", "stdout", "both"),
        ),
        Setting(
            "audit_key_file",
            "KINSHIP_AUDIT_KEY_FILE",
            None,
            "the Ed25519 private key (PEM) that signs audit checkpoints (`kinship audit keygen DIR`; mount it "
            "from a Secret): turns on signed checkpoints in the trail and in the checkpoint folder",
            lambda t: Path(t).expanduser(),
            _audit_key,
        ),
        Setting(
            "audit_checkpoint_dir",
            "KINSHIP_AUDIT_CHECKPOINT_DIR",
            None,
            "with a key: the folder each trail's signed checkpoints are also written to, to ship to write-once "
            "storage [default <audit file's folder>/checkpoints for the file; none for stdout]",
            lambda t: Path(t).expanduser(),
        ),
        Setting(
            "audit_checkpoint_events",
            "KINSHIP_AUDIT_CHECKPOINT_EVENTS",
            1000,
            "with a key: a signed checkpoint after at most this many events",
            int,
            config.positive,
        ),
        Setting(
            "audit_checkpoint_seconds",
            "KINSHIP_AUDIT_CHECKPOINT_SECONDS",
            60.0,
            "with a key: a signed checkpoint once an event has waited this long for one (the most the end of a "
            "trail is covered by no signature)",
            float,
            config.positive,
        ),
        Setting(
            "rate_limit_per_second",
            "KINSHIP_RATE_LIMIT_PER_SECOND",
            50.0,
            "calls per second each caller may make on average (0: no limit)",
            float,
            config.non_negative,
        ),
        Setting(
            "rate_limit_burst",
            "KINSHIP_RATE_LIMIT_BURST",
            100,
            "calls a caller may make at once above its rate",
            int,
            config.positive,
        ),
        Setting("max_top_k", "KINSHIP_MAX_TOP_K", 1000, "largest top_k a Search may ask for", int, config.positive),
        Setting(
            "max_top_n", "KINSHIP_MAX_TOP_N", 100, "largest top_n a FindRelatives may ask for", int, config.positive
        ),
        Setting(
            "max_batch",
            "KINSHIP_MAX_BATCH",
            1000,
            "most records, queries or ids one Upsert, Search, GetRecords or Delete may carry",
            int,
            config.positive,
        ),
        Setting(
            "max_deadline_seconds",
            "KINSHIP_MAX_DEADLINE_SECONDS",
            300.0,
            "longest any call may run: the caller's deadline is capped to it, and a call without one gets it",
            float,
            config.positive,
        ),
    ]


def server_settings(service: str, default_port: int) -> list[Setting]:
    """Every setting of a gRPC server of the suite: the runtime's, then the security ones."""
    return [*config.server_settings(service, default_port), *security_settings(service)]


def security_on(settings: SimpleNamespace) -> bool:
    return getattr(settings, "tls_dir", None) is not None or bool(getattr(settings, "jwt_public_keys", ()))


def purpose_required(settings: SimpleNamespace) -> bool:
    value = getattr(settings, "require_purpose", "auto")
    return security_on(settings) if value == "auto" else value == "true"


def audit_path(settings: SimpleNamespace, service: str) -> Path:
    explicit = getattr(settings, "audit_log", None)
    if explicit is not None:
        return Path(explicit)
    # The indexer has a data dir of its own; the others use the suite's.
    data_dir = getattr(settings, "data_dir", None) or os.environ.get("KINSHIP_DATA_DIR") or config.default_data_dir()
    data_dir = Path(data_dir).expanduser()
    return data_dir / "audit" / f"{service}.audit.jsonl"
