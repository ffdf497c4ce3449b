"""Process settings: ``SHARPEYES_*`` environment variables over an optional YAML file.

Precedence, highest first: explicit keyword arguments, environment, the YAML
file given with ``--config`` (or ``SHARPEYES_CONFIG``), then the defaults here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

SpoolPolicy = Literal["drop-oldest-unuploaded", "stop-recording"]


class Settings(BaseSettings):
    """Everything a sharpeyes process needs to know about its environment."""

    model_config = SettingsConfigDict(env_prefix="SHARPEYES_", extra="forbid")

    data_dir: Path = Field(Path("data"), description="Root of the embedded index, objects and spool.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; default sqlite:///{data_dir}/index.db."
    )
    s3_endpoint: str = Field("", description="host:port of S3/MinIO; empty means the local object directory.")
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "sharpeyes"
    s3_secure: bool = False
    s3_region: str = ""
    objects_dir: Path | None = Field(None, description="Local object directory; default {data_dir}/objects.")
    segment_target_seconds: float = Field(60.0, ge=2.0, le=3600.0)
    spool_dir: Path | None = Field(None, description="Spool directory; default {data_dir}/spool.")
    spool_shared_dir: Path | None = Field(
        None, description="A spool volume every ingest worker mounts (NFS, CephFS, a shared PVC). Each worker "
        "spools under {dir}/{worker_id}, and the worker that takes over a dead worker's camera adopts its spooled "
        "segments there, so a worker that dies for good loses at most its last GOP in memory (docs/scale.md). "
        "Overrides spool_dir.")
    spool_quota_bytes: int = Field(20 * 1024**3, ge=1024**2)
    spool_policy: SpoolPolicy = "drop-oldest-unuploaded"
    http_bind: str = Field("127.0.0.1:8080", description="host:port of the API and console.")
    tls_cert: Path | None = Field(None, description="PEM certificate: serve HTTPS (with HSTS) instead of HTTP.")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")
    forwarded_allow_ips: str = Field("127.0.0.1", description="Proxies (comma-separated IPs, or *) whose "
                                     "X-Forwarded-For is trusted for the client address in the audit trail.")
    rtsp_bind: str = Field("127.0.0.1:8554", description="host:port of the RTSP restream server.")
    registry_poll_seconds: float = Field(2.0, gt=0, le=5.0)
    stall_timeout_seconds: float = Field(10.0, ge=1.0, description="Reconnect when no packet arrives for this long.")
    ingest_puller: Literal["native", "ffmpeg"] = Field(
        "native", description="Default puller of RTSP cameras: native (our asyncio RTSP client, one event loop for "
        "many cameras) or ffmpeg (PyAV's RTSP demuxer, a thread per camera). A camera's own puller wins.")
    ingest_loops: int | None = Field(None, ge=1, le=256, description="Most event-loop threads of the native "
                                     "puller (default: the CPU count).")
    ingest_cameras_per_loop: int = Field(128, ge=1, le=100_000, description="Camera streams a native ingest loop "
                                         "takes before another loop is started (up to ingest_loops): loops in one "
                                         "process share the GIL, so fewer loops cost less CPU.")
    ingest_read_batch_ms: float = Field(25.0, ge=0, le=40, description="How long a native ingest loop lets its "
                                        "sockets fill before it reads them: fewer wake-ups and reads per camera, that "
                                        "much more live latency, under a frame at 25 or 30 fps (0: read as soon as data arrives).")
    connect_timeout_seconds: float = Field(10.0, ge=1.0)
    max_clock_drift_seconds: float = Field(2.0, gt=0, description="Re-anchor media time to the wall clock past this drift.")
    shutdown_timeout_seconds: float = Field(10.0, gt=0)
    display_timezone: str = "Asia/Shanghai"
    clip_max_seconds: float = Field(86400.0, gt=0, description="Longest range GET clip.mp4/vod.m3u8 serves; longer ranges go through export jobs.")
    export_max_seconds: float = Field(7 * 24 * 3600.0, gt=0, description="Longest range one export job may cover (clip.mp4 has its own, shorter limit).")
    worker_id: str = Field("", description="Name of this ingest worker; default the host name.")
    # Media (see docs/media.md): transcode profiles, snapshots, thumbnails, motion.
    transcode_encoder: str = Field("auto", description="H.264 encoder: auto (first hardware encoder that opens, else libx264), or a name such as libx264, h264_nvenc.")
    transcode_threads: int = Field(2, ge=0, le=64, description="Encoder/decoder threads per transcoded camera (0 = FFmpeg decides).")
    sub_width: int = Field(640, ge=64, le=1920, description="Width of the sub-stream the 'sub' profile makes.")
    sub_height: int = Field(360, ge=64, le=1080)
    sub_fps: float = Field(12.0, gt=0, le=30)
    live_height: int = Field(720, ge=0, le=2160, description="Height of the H.264 the 'live-h264' profile makes (0 keeps the camera's).")
    snapshots: bool = Field(True, description="Keep the latest picture and per-minute thumbnails of every camera.")
    thumbnail_interval_seconds: float = Field(60.0, gt=0, description="One timeline thumbnail per camera per this many seconds.")
    thumbnail_width: int = Field(160, ge=32, le=640)
    motion: bool = Field(True, description="Analyse motion on the sub-stream of every camera that has one.")
    motion_on_main: bool = Field(False, description="Also analyse cameras without a sub-stream, on their main stream: "
                                 "that decodes every main-stream frame (about 10x the CPU of remuxing a 1080p camera).")
    motion_fps: float = Field(5.0, gt=0, le=25)
    motion_width: int = Field(320, ge=64, le=1280)
    # -- health, retention and storage faults (docs/reliability.md) --
    health_online_target: float = Field(0.98, ge=0, le=1, description="Fleet online rate below which health is degraded.")
    retention_interval_seconds: float = Field(300.0, gt=0, description="How often the retention cleaner runs inside run/ingest.")
    retention_camera_quota_bytes: int = Field(0, ge=0, description="Per camera byte quota of recordings; 0 = none.")
    retention_region_quota_bytes: dict[str, int] = Field(default_factory=dict, description="Byte quota per region code (cameras of the region and below).")
    retention_min_free_bytes: int = Field(0, ge=0, description="Local store: delete the oldest non-held segments while free disk is below this; 0 = off.")
    retention_index_only: bool = Field(False, description="Bucket lifecycle rules delete the objects: the cleaner only removes index rows.")
    # -- scale-out (docs/scale.md) --
    use_leases: bool = Field(False, description="Share cameras with other workers through leases in the index "
                             "(always on for 'sharpeyes ingest'; 'run' records everything unless this is set).")
    lease_ttl_seconds: float = Field(15.0, ge=1.0, le=300.0, description="A dead worker's cameras are taken over after this.")
    worker_max_cameras: int = Field(0, ge=0, description="Most cameras this worker records (0: its fair share, no cap).")
    lease_slack: int = Field(1, ge=0, description="Cameras a worker may hold above its fair share when others are full.")
    advertise_url: str = Field("", description="This worker's HTTP base URL as API nodes should reach it (live redirects).")
    ice_servers: list[str] = Field(
        default_factory=list,
        description="STUN/TURN URLs for WebRTC (stun:host:3478, turn:user:pass@host:3478); empty: host candidates only.",
    )
    webrtc_host_addresses: list[str] = Field(
        default_factory=list,
        description="Local addresses WebRTC offers as ICE host candidates; empty: every address but loopback "
        "(aioice's choice). Set [127.0.0.1] for loopback-only tests and single-host set-ups.",
    )
    live_max_viewers: int = Field(100, ge=1, description="Live viewers per camera stream (WebRTC + MSE); more get 429.")
    # -- GB/T 28181 device access (docs/gb28181.md) --
    gb_sip_bind: str = Field("", description="host:port of our GB/T 28181 SIP server (UDP and TCP); empty: "
                             "GB/T 28181 is off.")
    gb_id: str = Field("34020000002000000001", description="Our 20-digit platform id (SIP user of our server).")
    gb_domain: str = Field("3402000000", description="Our 10-digit SIP domain, also the digest realm.")
    gb_password: str = Field("", description="Default device password; empty: only devices added with "
                             "'sharpeyes gb device add --password' may register.")
    gb_media_host: str = Field("", description="The address we put in our SDP and SIP Contact, as devices reach us "
                               "(the public address behind NAT); empty: the SIP bind host.")
    gb_rtp_ports: str = Field("30000-30999", description="UDP/TCP port range for GB/T 28181 media, FIRST-LAST.")
    gb_auto_enable: bool = Field(True, description="Record channels of a newly registered device at once.")
    gb_media_transport: Literal["udp", "tcp-passive", "tcp-active"] = Field(
        "udp", description="How devices send media unless 'gb device add --media-transport' says otherwise: udp, "
        "tcp-passive (we listen, the device connects) or tcp-active (we connect to the device).")
    live_max_views_per_user: int = Field(32, ge=1, description="Live views one user may hold open at once (WebRTC, "
                                         "MSE, RTSP); more get 429, so one account cannot take every viewer slot.")
    whep_connect_timeout_seconds: float = Field(30.0, gt=0, description="A WHEP session whose peer has not "
                                                "connected within this time is ended and frees its viewer slot.")
    metrics_allow_ips: list[str] = Field(default_factory=list, description="Addresses or CIDR ranges that may "
                                         "scrape GET /metrics without a credential (a Prometheus server); others "
                                         "need an operator or admin token or API key. Empty: credential only.")
    probe_allow_ranges: list[str] = Field(default_factory=list, description="CIDR ranges POST /api/probe may "
                                          "reach although they are loopback or link-local (set by an admin).")
    audit_key_file: Path | None = Field(None, description="Ed25519 key that signs audit checkpoints; keep it "
                                        "where the database's owner cannot write (default: "
                                        "{data_dir}/audit_signing_key.pem).")
    audit_checkpoint_seconds: float = Field(60.0, gt=0, description="How often the audit head is signed and "
                                            "anchored in the object store (rows newer than that can be lost "
                                            "unnoticed).")
    import_max_rows: int = Field(5000, ge=1, description="Rows one camera import may carry.")
    rtsp_auth: bool = Field(True, description="The RTSP restream asks for a stream token (?token=) or Digest "
                                              "credentials of a user; false only on a closed network.")
    rtsp_idle_timeout_seconds: float = Field(30.0, gt=0, description="An RTSP connection that sends no complete "
                                             "request for this long is closed (slow headers, idle sockets).")
    rtsp_max_connections_per_client: int = Field(16, ge=1, description="RTSP connections one address may hold.")
    rtsp_max_sessions_per_connection: int = Field(4, ge=1, description="RTSP SETUPs one connection may hold.")

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _named_proxies(cls, value: str) -> str:
        # "*" lets any client write its own X-Forwarded-For: forged audit addresses, and a
        # fresh address per sign-in attempt defeats the per-address limit.
        if "*" in value:
            raise ValueError("forwarded_allow_ips='*' trusts every client's X-Forwarded-For; "
                             "give the reverse proxy's address (for example 10.0.0.2)")
        return value

    @field_validator("http_bind", "rtsp_bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{value!r}: expected host:port, for example 127.0.0.1:8080")
        return value

    @field_validator("gb_sip_bind")
    @classmethod
    def _gb_bind(cls, value: str) -> str:
        return cls._host_port(value) if value else value

    @field_validator("gb_id")
    @classmethod
    def _gb_id(cls, value: str) -> str:
        if len(value) != 20 or not value.isdigit():
            raise ValueError(f"gb_id {value!r}: a GB/T 28181 platform id has 20 digits")
        return value

    @field_validator("gb_domain")
    @classmethod
    def _gb_domain(cls, value: str) -> str:
        if len(value) != 10 or not value.isdigit():
            raise ValueError(f"gb_domain {value!r}: a GB/T 28181 domain has 10 digits (the first 10 of gb_id)")
        return value

    @field_validator("gb_rtp_ports")
    @classmethod
    def _gb_ports(cls, value: str) -> str:
        first, sep, last = value.partition("-")
        if not (sep and first.isdigit() and last.isdigit() and 1024 <= int(first) <= int(last) <= 65535):
            raise ValueError(f"gb_rtp_ports {value!r}: expected FIRST-LAST between 1024 and 65535, e.g. 30000-30999")
        return value

    @property
    def gb_rtp_port_range(self) -> tuple[int, int]:
        first, _, last = self.gb_rtp_ports.partition("-")
        return int(first), int(last)

    @model_validator(mode="after")
    def _tls_pair(self) -> "Settings":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both (PEM files) or neither")
        return self

    @model_validator(mode="after")
    def _derive_paths(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'index.db'}"
        if self.objects_dir is None:
            self.objects_dir = self.data_dir / "objects"
        if self.spool_dir is None:
            self.spool_dir = self.data_dir / "spool"
        if not self.worker_id:
            self.worker_id = os.uname().nodename
        return self

    @property
    def uses_s3(self) -> bool:
        return bool(self.s3_endpoint)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls)


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the file named by ``SHARPEYES_CONFIG`` (set by ``--config``)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("SHARPEYES_CONFIG")
        if not path:
            return {}
        return load_yaml_settings(Path(path))


def load_yaml_settings(path: Path) -> dict[str, Any]:
    """Read a settings YAML file: a mapping of setting names (no prefix) to values."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ValueError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a mapping of setting names to values")
    # Keys may be written as the environment names without the prefix (GB_SIP_BIND) or lower-case.
    return {str(k).lower(): v for k, v in data.items()}
