"""Settings, the camera and region models, GB/T 28181 id rules and fleet files."""

from config.cameras import STREAMS, Camera, Region, RtspTransport, StreamName, TranscodeProfile, validate_rtsp_url
from config.fleet import FleetFileError, RowError, read_fleet_file, read_fleet_text, write_fleet_csv
from config.gb28181 import InvalidCameraId, validate_camera_id
from config.redact import redact_text, redact_url
from config.settings import Settings, SpoolPolicy

__all__ = [
    "STREAMS",
    "Camera",
    "FleetFileError",
    "InvalidCameraId",
    "Region",
    "RowError",
    "RtspTransport",
    "Settings",
    "SpoolPolicy",
    "StreamName",
    "TranscodeProfile",
    "read_fleet_file",
    "read_fleet_text",
    "redact_text",
    "redact_url",
    "validate_camera_id",
    "validate_rtsp_url",
    "write_fleet_csv",
]
