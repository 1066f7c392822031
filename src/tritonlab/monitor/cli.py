"""`tritonlab monitor up|down|status`: a Prometheus on any tritonlab server, for self-learners."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tritonlab.errors import TritonLabError
from tritonlab.foreground import hold_in_foreground

if TYPE_CHECKING:
    from tritonlab.monitor import Prometheus

monitor_app = typer.Typer(help="Watch a Triton server with a real Prometheus (127.0.0.1, scrapes every second).",
                          no_args_is_help=True)  # fmt: skip
console = Console()
err = Console(stderr=True)


def _fail(error: TritonLabError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {error.message}")
    if error.fix:
        err.print(f"[bold]fix:[/] {error.fix}")
    return typer.Exit(1)


def latest_metrics_url() -> str:
    """The metrics URL of the newest server tritonlab started."""
    from tritonlab.server import registry

    records = registry.records()
    if not records:
        raise TritonLabError(
            "no running tritonlab server to watch", fix="start one (`tritonlab up`) or pass --server URL"
        )
    return max(records, key=lambda r: r.started_at).metrics_url


@monitor_app.command("up")
def up(
    server: Annotated[
        str | None, typer.Option(help="Triton's metrics URL, or the HTTP URL of a server tritonlab started.")
    ] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Watch the newest tritonlab server (the default).")] = False,
    port: Annotated[int | None, typer.Option(help="Prometheus port on 127.0.0.1 (default: a free one).")] = None,
    rules: Annotated[list[Path] | None, typer.Option(help="Rule file to load (checked with promtool).")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Leave it running; `tritonlab monitor down`.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the URLs as JSON.")] = False,
) -> None:
    """Start Prometheus scraping a Triton server every second; wait for the first scrape."""
    from tritonlab.monitor import Prometheus

    if server and latest:
        raise _fail(TritonLabError("--server and --latest exclude each other", fix="give one of them"))
    try:
        target = server or latest_metrics_url()
        prom = Prometheus(target, rule_files=rules or (), port=port, detach=detach).start()
        waited = prom.wait_first_scrape()
    except TritonLabError as e:
        raise _fail(e) from None
    if detach:
        _announce(prom, waited, as_json)
        if not as_json:
            console.print("running in the background: `tritonlab monitor down` stops it")
        return
    hold_in_foreground(prom, "prometheus", lambda: _announce(prom, waited, as_json), hint=not as_json)


def _announce(prom: Prometheus, waited: float, as_json: bool) -> None:
    info = {"url": prom.url, "pid": prom.pid, "targets": prom.metrics_urls, "first_scrape_s": round(waited, 2)}
    if as_json:
        print(json.dumps(info), flush=True)
        return
    console.print(f"[bold green]Prometheus is scraping[/] {', '.join(prom.metrics_urls)} every second")
    console.print(f"  url          {prom.url}   (the Graph tab runs PromQL)")
    console.print(f"  first scrape {waited:.1f} s after start")


@monitor_app.command("down")
def down(
    all_: Annotated[bool, typer.Option("--all", help="Also those whose owner (a notebook) still runs.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stop Prometheus servers started with --detach or whose owner died; --all stops every one."""
    from tritonlab.monitor import registry

    stopped, skipped = registry.down(everything=all_)
    if as_json:
        print(json.dumps({"stopped": [r.pid for r in stopped], "skipped": [r.pid for r in skipped]}))
        return
    for record in stopped:
        console.print(f"stopped Prometheus {record.pid} ({record.url})")
    for record in skipped:
        console.print(f"left running: Prometheus {record.pid}, owned by live process {record.owner_pid} (use --all)")
    if not (stopped or skipped):
        console.print("no tritonlab Prometheus running")


@monitor_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the Prometheus servers tritonlab started."""
    from tritonlab.monitor import registry

    rows = [{"pid": r.pid, "url": r.url, "targets": r.targets,
             "owner": "detached" if r.detached else ("orphaned" if r.orphaned else f"pid {r.owner_pid}")}
            for r in registry.records()]  # fmt: skip
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        console.print("no tritonlab Prometheus running (`tritonlab monitor up` starts one)")
    for row in rows:
        console.print(f"{row['pid']}  {row['url']}  scraping {', '.join(row['targets'])}  ({row['owner']})")
