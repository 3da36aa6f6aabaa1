"""``crm-meetings sandbox serve``: the vendor emulators on 127.0.0.1, for people and demos.

Prints each vendor's base URL with an access token and a refresh token it accepts, and the
test CA's certificate for ``curl --cacert``; Ctrl-C or SIGTERM stops it (exit status 0).
Also runnable as ``python -m crm_meetings.commands.sandbox serve``.
"""

from __future__ import annotations

import json
import signal
import threading
from types import FrameType
from typing import Annotated, Any

import typer

from crm_meetings.commands import console, run_app
from crm_meetings.sandbox import registry
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox

__all__ = ["app"]

app = typer.Typer(help="Local emulators of the CRM and conferencing APIs.", no_args_is_help=True)


@app.callback()
def sandbox() -> None:
    """Local emulators of Salesforce, HubSpot, Zoho CRM, GoTo Meeting and Zoom."""


def _vendor_names(values: list[str] | None) -> list[str] | None:
    """``--vendors a,b --vendors c`` → ``[a, b, c]``; nothing → every available one."""
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _describe(box: Sandbox, ttl: float) -> dict[str, Any]:
    """What a client needs: the CA, and per vendor its URLs, tokens and an example."""
    vendors = {
        vendor: {
            "url": box.url(vendor),
            **({"http_url": box.http_url(vendor)} if box.http else {}),
            "access_token": (token := box.token(vendor, ttl=ttl)),
            "refresh_token": box.refresh_token(vendor),
            "authorization": registry.example(vendor).authorization(token),
            "example": box.url(vendor) + registry.example(vendor).path,
        }
        for vendor in box.vendors
    }
    return {"ca_path": str(box.ca_path), "vendors": vendors}


def _print_human(box: Sandbox, description: dict[str, Any], seed: SeedSpec) -> None:
    vendors: dict[str, dict[str, str]] = description["vendors"]
    out = console
    out.print(
        f"crm-meetings sandbox: {len(vendors)} emulator(s) on 127.0.0.1, "
        f"seed {seed.seed}, {seed.meetings} meetings",
        markup=False,
    )
    out.print(f"CA certificate: {box.ca_path}", markup=False)
    for vendor, info in vendors.items():
        out.print("", markup=False)
        out.print(f"{vendor}  {info['url']}", markup=False)
        if "http_url" in info:
            out.print(f"  plain HTTP:    {info['http_url']}", markup=False)
        out.print(f"  access token:  {info['access_token']}", markup=False)
        out.print(f"  refresh token: {info['refresh_token']}", markup=False)
        out.print(
            f"  try: curl --cacert {box.ca_path} "
            f"-H 'Authorization: {info['authorization']}' '{info['example']}'",
            markup=False,
        )
    out.print("", markup=False)
    out.print("Admin (calls, faults, state, tokens): <url>/__sandbox__/", markup=False)
    out.print("Press Ctrl-C to stop.", markup=False)


@app.command()
def serve(
    seed: Annotated[int, typer.Option(help="Seed of the generated data.")] = 42,
    meetings: Annotated[int, typer.Option(min=0, help="Meetings to generate.")] = 1000,
    organizers: Annotated[int, typer.Option(min=1, help="Organizers (reps).")] = 5,
    records: Annotated[int, typer.Option(min=1, help="CRM companies, one contact each.")] = 50,
    vendors: Annotated[
        list[str] | None,
        typer.Option(
            "--vendors",
            help="Emulators to serve, comma-separated or repeated "
            f"({', '.join(registry.names())}); "
            "default: every available one.",
        ),
    ] = None,
    port_base: Annotated[
        int, typer.Option(min=0, max=65000, help="First port (0: ephemeral ports).")
    ] = 0,
    http: Annotated[bool, typer.Option(help="Also serve plain HTTP.")] = False,
    token_ttl: Annotated[
        float, typer.Option(min=1, help="Lifetime of the printed access tokens (s).")
    ] = 86_400.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON line instead of text.")
    ] = False,
) -> None:
    """Serve the emulators over HTTPS until Ctrl-C."""
    spec = SeedSpec(seed=seed, meetings=meetings, organizers=organizers, records=records)
    box = Sandbox(_vendor_names(vendors), seed=spec, http=http, port_base=port_base)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with box:
            description = _describe(box, token_ttl)
            if as_json:
                console.print(json.dumps(description), markup=False, highlight=False)
            else:
                _print_human(box, description, spec)
            console.file.flush()
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    run_app(app)
