"""HTTPS when given a certificate: a real TLS handshake, HSTS on every answer, CORS closed."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.settings import Settings
from storage.db.engine import open_engine
from storage.index.segments import SegmentIndex
from storage.index.registry import Registry
from streams.app import create_app
from streams.context import AppContext
from tests.support.http import UvicornThread
from tests.support.s3server import free_port


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_with_hsts_and_no_cors(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = Settings(data_dir=tmp_path, tls_cert=cert, tls_key=key)
    engine = open_engine(settings.database_url)
    ctx = AppContext(settings=settings, index=SegmentIndex(engine), registry=Registry(engine), store=None)  # type: ignore[arg-type]
    port = free_port()
    bind = f"127.0.0.1:{port}"
    server = UvicornThread(create_app(ctx), port, settings).start()
    try:
        verify = ssl.create_default_context(cafile=str(cert))
        r = httpx.get(f"https://{bind}/api/ping", verify=verify, headers={"Origin": "https://elsewhere.example"})
        assert r.status_code == 200
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert "access-control-allow-origin" not in r.headers
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{bind}/api/ping", timeout=3)  # plain HTTP is not served
    finally:
        server.stop()


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        Settings(data_dir=tmp_path, tls_cert=cert)
