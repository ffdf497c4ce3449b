"""``sharpeyes run | ingest | serve | demo``: the long-running processes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sharpeyes.cli.output import console, fail, services
from sharpeyes.services import Services

process_app = typer.Typer()


TlsCert = Annotated[Optional[Path], typer.Option("--tls-cert", exists=True, dir_okay=False,
                                                 help="PEM certificate: serve HTTPS with HSTS (with --tls-key).")]
TlsKey = Annotated[Optional[Path], typer.Option("--tls-key", exists=True, dir_okay=False,
                                                help="PEM private key of --tls-cert.")]


def with_tls(svc: Services, tls_cert: Optional[Path], tls_key: Optional[Path]) -> Services:
    """Apply --tls-cert/--tls-key over the settings (both or neither)."""
    if tls_cert is not None or tls_key is not None:
        if tls_cert is None or tls_key is None:
            fail("--tls-cert and --tls-key go together: give both PEM files")
        svc.settings.tls_cert, svc.settings.tls_key = tls_cert, tls_key
    return svc


@process_app.command("run")
def run(ctx: typer.Context,
        http_bind: Optional[str] = typer.Option(None, help="host:port for the API and console (default SHARPEYES_HTTP_BIND or 127.0.0.1:8080)."),
        tls_cert: TlsCert = None,
        tls_key: TlsKey = None,
        ) -> None:
    """Everything in one process: record every enabled camera and serve the API and console."""
    from sharpeyes.process import run_process

    run_process(with_tls(services(ctx), tls_cert, tls_key), http_bind=http_bind, ingest=True, serve=True)


@process_app.command("ingest")
def ingest_cmd(ctx: typer.Context,
               worker_id: Optional[str] = typer.Option(None, help="Name of this worker (default: host name)."),
               http_bind: Optional[str] = typer.Option(None, help="host:port for this worker's live and metrics endpoints."),
               leases: bool = typer.Option(True, "--leases/--no-leases", help="Share the cameras with other workers by lease (default), or record them all."),
               advertise_url: Optional[str] = typer.Option(None, help="This worker's HTTP base URL for API nodes' live redirects (default SHARPEYES_ADVERTISE_URL)."),
               ) -> None:
    """An ingest worker: record its share of the cameras (and serve their live feeds), no console."""
    from sharpeyes.process import run_process

    svc = services(ctx)
    if worker_id:
        svc.settings.worker_id = worker_id
    svc.settings.use_leases = leases
    if advertise_url:
        svc.settings.advertise_url = advertise_url
    from storage.index.leases import DuplicateWorker

    try:
        run_process(svc, http_bind=http_bind, ingest=True, serve=False)
    except DuplicateWorker as exc:
        fail(str(exc), code=3)


@process_app.command("serve")
def serve_cmd(ctx: typer.Context,
              http_bind: Optional[str] = typer.Option(None, help="host:port for the API and console."),
              tls_cert: TlsCert = None,
              tls_key: TlsKey = None,
              ) -> None:
    """A stateless API and console node (no recording)."""
    from sharpeyes.process import run_process

    run_process(with_tls(services(ctx), tls_cert, tls_key), http_bind=http_bind, ingest=False, serve=True)


def _start_gb_device(svc, loop, sim, port: int):  # type: ignore[no-untyped-def]
    """Turn on the SIP server for the demo (unless configured) and start the simulated GB device."""
    from ingest.gb28181.sip import Peer
    from streams.demo.fleet import TOWNSHIPS
    from streams.demo.gb_device import SimulatedGbDevice
    from storage.index.gb_devices import GbDeviceStore

    settings = svc.settings
    if not settings.gb_sip_bind:
        settings.gb_sip_bind = f"127.0.0.1:{port}"
    password = settings.gb_password or "demo-gb-device"
    store = GbDeviceStore(svc.engine, svc.cipher)
    if store.get(SimulatedGbDevice.device_id) is None or not settings.gb_password:
        store.add(SimulatedGbDevice.device_id, password)
    host, _, sip_port = settings.gb_sip_bind.rpartition(":")
    device = SimulatedGbDevice(sim.sources["sim-1"], Peer("UDP", "127.0.0.1" if host in ("", "0.0.0.0") else host,
                                                          int(sip_port)),
                               settings.gb_id, settings.gb_domain, password, civil_code=TOWNSHIPS[0].code)

    async def start() -> None:
        await device.start()
    loop.run(start())
    return device


@process_app.command("demo")
def demo(ctx: typer.Context,
         cameras: int = typer.Option(4, min=1, max=64, help="How many simulated cameras."),
         sim_port: int = typer.Option(8560, help="Port of the simulated cameras' RTSP server (127.0.0.1)."),
         http_bind: Optional[str] = typer.Option(None, help="host:port for the API and console."),
         gb_sip_port: int = typer.Option(5060, help="Port of the GB/T 28181 SIP server the demo's simulated GB "
                                         "device registers to (127.0.0.1; GB_SIP_BIND wins when set); 0: no GB device."),
         ) -> None:
    """Simulated cameras plus `run`: a first look with nothing else installed.

    Starts N simulated 720p cameras (with 360p sub-streams) on 127.0.0.1, registers
    them under a demo county, records them and serves the console. One more simulated camera is
    a GB/T 28181 device: it registers to the SIP server, answers Catalog and streams PS when invited.
    """
    from streams.background import BackgroundLoop
    from streams.demo.fleet import register_demo
    from streams.demo.simulated import start_simulated_cameras
    from sharpeyes.process import run_process

    svc = services(ctx)
    console.print(f"preparing {cameras} simulated camera(s) (first start encodes their loops, a few seconds each)...")
    loop = BackgroundLoop("simulated-cameras")
    try:
        sim = loop.run(start_simulated_cameras(cameras, svc.settings.data_dir, "127.0.0.1", sim_port))
    except OSError as exc:
        loop.stop()
        fail(f"cannot start the simulated cameras on 127.0.0.1:{sim_port}: {exc}; pick another --sim-port")
    try:
        registered = register_demo(svc.registry, sim.urls)
        console.print(f"{len(registered)} simulated camera(s) at rtsp://127.0.0.1:{sim.server.port}/sim-N "
                      f"(data in {svc.settings.data_dir})")
        device = None
        if gb_sip_port or svc.settings.gb_sip_bind:
            device = _start_gb_device(svc, loop, sim, gb_sip_port)
            console.print(f"simulated GB/T 28181 device {device.device_id} registers to {svc.settings.gb_sip_bind}")
        run_process(svc, http_bind=http_bind, ingest=True, serve=True)
    finally:
        if device is not None:
            loop.run(device.close(), timeout=5)
        loop.run(sim.close(), timeout=5)
        loop.stop()
