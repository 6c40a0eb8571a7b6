"""``moorage certs make-ca`` / ``make-server``: a private CA and a server certificate for ``serve --tls-cert``.

The next steps (trusting the CA in podman, docker and on Kubernetes nodes) are printed after each
command and written out in docs/deploy.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moorage.certs import CA_DAYS, SERVER_DAYS, CertError, make_ca, make_server

__all__ = ["certs_app"]

certs_app = typer.Typer(no_args_is_help=True, help="A private CA and server certificates for HTTPS.")

OutOption = Annotated[Path, typer.Option("--out", "-o", help="Directory to write the files into.")]
ForceOption = Annotated[bool, typer.Option(help="Overwrite existing files.")]


def _fail(exc: CertError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


@certs_app.command("make-ca")
def make_ca_command(
    out: OutOption = Path("moorage-certs"),
    common_name: Annotated[str, typer.Option(help="The CA's name as clients show it.")] = "Moorage private CA",
    days: Annotated[int, typer.Option(help="Lifetime in days.")] = CA_DAYS,
    force: ForceOption = False,
) -> None:
    """Write ca.crt and ca.key (mode 0600): a CA that can sign server certificates and nothing else."""
    try:
        files = make_ca(out, common_name=common_name, days=days, force=force)
    except CertError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {files.certificate} and {files.key} (keep the key private)")
    typer.echo(f"next: moorage certs make-server --ca-dir {out} --host <registry host name> --host <its IP>")


@certs_app.command("make-server")
def make_server_command(
    host: Annotated[list[str], typer.Option(help="A host name or IP address clients use (repeat; first = CN).")],
    out: OutOption = Path("moorage-certs"),
    ca_dir: Annotated[Path | None, typer.Option(help="Directory holding ca.crt and ca.key (make-ca's --out).")] = None,
    ca_cert: Annotated[Path | None, typer.Option(help="The CA certificate (default: <ca-dir>/ca.crt).")] = None,
    ca_key: Annotated[Path | None, typer.Option(help="The CA key (default: <ca-dir>/ca.key).")] = None,
    days: Annotated[int, typer.Option(help="Lifetime in days (capped at the CA's).")] = SERVER_DAYS,
    force: ForceOption = False,
) -> None:
    """Write server.crt (certificate + CA) and server.key (0600) with every --host in subjectAltName."""
    base = ca_dir or out
    try:
        files = make_server(out, ca_cert or base / "ca.crt", ca_key or base / "ca.key", host, days=days, force=force)
    except CertError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {files.certificate} and {files.key}")
    typer.echo(f"serve with: moorage serve --tls-cert {files.certificate} --tls-key {files.key}")
    typer.echo(f"clients trust {base / 'ca.crt'}: e.g. /etc/containers/certs.d/<host>:<port>/ca.crt (docs/deploy.md)")
