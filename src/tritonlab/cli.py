"""The `tritonlab` command: up, down, status, logs, doctor, lab, bench, monitor."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from tritonlab.errors import TritonLabError
from tritonlab.foreground import hold_in_foreground

if TYPE_CHECKING:
    from tritonlab.server import Server

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="tritonlab: learn inference serving with a real NVIDIA Triton Inference Server.",
)
console = Console()
err = Console(stderr=True)


def fail(error: TritonLabError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {error.message}")
    if error.fix:
        err.print(f"[bold]fix:[/] {error.fix}")
    return typer.Exit(1)


@app.command()
def up(
    repo: Annotated[Path | None, typer.Option(help="Model repository (default: the shipped example).")] = None,
    model_control_mode: Annotated[str, typer.Option(help="none, poll or explicit.")] = "none",
    load_model: Annotated[list[str] | None, typer.Option(help="With explicit mode: model to load at start.")] = None,
    http_port: Annotated[int | None, typer.Option(help="Default: a free port.")] = None,
    grpc_port: Annotated[int | None, typer.Option()] = None,
    metrics_port: Annotated[int | None, typer.Option()] = None,
    backend: Annotated[str | None, typer.Option(help="embedded (default), docker or remote.")] = None,
    image: Annotated[str | None, typer.Option(help="docker: image (default: the manifest's CPU image).")] = None,
    gpus: Annotated[str | None, typer.Option(help="docker: 'all', a count, or device ids (a,b).")] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Leave it running; stop with `tritonlab down`.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the URLs as JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 120.0,
) -> None:
    """Start a Triton server on 127.0.0.1 and wait until it is ready."""
    from tritonlab.server import create_server

    docker_options: dict[str, object] = {}
    if image:
        docker_options["image"] = image
    if gpus:
        docker_options["gpus"] = int(gpus) if gpus.isdigit() else gpus
    if docker_options and (backend or os.environ.get("TRITONLAB_BACKEND")) != "docker":
        raise fail(TritonLabError("--image and --gpus apply to the docker backend", fix="add --backend docker"))
    try:
        server = create_server(
            repo, backend=backend, model_control_mode=model_control_mode,  # type: ignore[arg-type]
            models=load_model or (), http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
            startup_timeout=timeout, detach=detach, **docker_options,
        )  # fmt: skip
        server.start()
    except TritonLabError as e:
        raise fail(e) from None
    if detach:
        _announce(server, as_json)
        if not as_json:
            console.print("running in the background: `tritonlab down` stops it")
        return
    hold_in_foreground(server, "tritonserver", lambda: _announce(server, as_json), hint=not as_json)


def _announce(server: Server, as_json: bool) -> None:
    info = server.urls()
    for record in server.orphans_stopped:
        err.print(f"stopped server {record.id} ({record.http_url}): the process that started it had died")
    if as_json:
        print(json.dumps(info), flush=True)
        return
    where = f"container {info['container'][:12]}" if info.get("container") else f"pid {info['pid']}"
    console.print(f"[bold green]Triton is ready[/] ({where}, {info['model_control_mode']} mode)")
    for key in ("http_url", "grpc_url", "metrics_url", "repository", "log_path"):
        console.print(f"  {key:<12} {info[key]}")


@app.command()
def down(
    all_: Annotated[bool, typer.Option("--all", help="Also servers whose owner still runs, and strays.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stop servers started with --detach or whose owner died (a killed kernel); --all stops every one."""
    from tritonlab.server import registry

    stopped, skipped, strays, unreachable = registry.down(everything=all_)
    if as_json:
        print(json.dumps({"stopped": [r.id for r in stopped], "skipped": [r.id for r in skipped], "strays": strays,
                          "unreachable": [r.id for r in unreachable]}))  # fmt: skip
        return
    for record in stopped:
        console.print(f"stopped server {record.id} ({record.http_url})")
    for record in unreachable:
        host = record.extra.get("docker_host") or "the default Docker engine"
        console.print(f"not stopped: server {record.id} (container {record.extra['container'][:12]}): {host} is not "
                      "reachable. Its record is kept: start dockerd and run `tritonlab down` again")  # fmt: skip
    if strays:
        console.print(f"stopped {strays} unregistered tritonserver process(es)")
    for record in skipped:
        console.print(f"left running: server {record.id}, owned by live process {record.owner_pid} (use --all)")
    if not (stopped or strays or skipped or unreachable):
        console.print("no tritonlab servers running")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the Triton servers tritonlab started, with their health."""
    from tritonlab.server import RemoteServer, registry

    rows = []
    for record in registry.records():
        probe = RemoteServer(record.http_url)
        owner = "detached" if record.detached else ("orphaned" if record.orphaned else f"pid {record.owner_pid}")
        rows.append({
            "id": record.id, "backend": record.backend, "pid": record.pid, "http_url": record.http_url,
            "grpc_url": record.grpc_url,
            "metrics_url": record.metrics_url, "live": probe.is_live(), "ready": probe.is_ready(),
            "owner": owner, "repository": record.repository, "model_control_mode": record.model_control_mode,
            "log_path": record.log_path, "uptime_s": round(time.time() - record.started_at, 1),
        })  # fmt: skip
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        console.print("no tritonlab servers running (`tritonlab up` starts one)")
        return
    table = Table("id", "backend", "ready", "http", "grpc", "metrics", "owner", "repository")
    for row in rows:
        ready = "[green]ready[/]" if row["ready"] else ("[yellow]live[/]" if row["live"] else "[red]down[/]")
        table.add_row(row["id"], row["backend"], ready, row["http_url"], row["grpc_url"], row["metrics_url"],
                      row["owner"], row["repository"])  # fmt: skip
    console.print(table)


@app.command()
def logs(
    server_id: Annotated[
        str | None, typer.Argument(help="Server id from `tritonlab status` (default: newest).")
    ] = None,
    tail: Annotated[int, typer.Option("--tail", "-n", help="Last N lines (0: all).")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Print a server's log."""
    from tritonlab.paths import logs_dir
    from tritonlab.server import registry

    records = registry.records()
    if server_id:
        record = next((r for r in records if r.id == server_id), None)
        if record is None:
            raise fail(TritonLabError(f"no running server with id {server_id}", fix="see `tritonlab status`"))
        path = Path(record.log_path or "")
    elif records:
        path = Path(max(records, key=lambda r: r.started_at).log_path or "")
    else:
        candidates = sorted(logs_dir().glob("tritonserver-*.log"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise fail(TritonLabError("no server logs yet", fix="start a server with `tritonlab up`"))
        path = candidates[-1]
    lines = path.read_text(errors="replace").splitlines()
    print("\n".join(lines[-tail:] if tail else lines), flush=True)
    if follow:
        with path.open(errors="replace") as handle:
            handle.seek(0, 2)
            try:
                while True:
                    line = handle.readline()
                    if line:
                        print(line, end="", flush=True)
                    else:
                        time.sleep(0.3)
            except KeyboardInterrupt:
                pass


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    skip_server: Annotated[bool, typer.Option("--skip-server", help="Do not start the embedded server.")] = False,
) -> None:
    """Check versions, GPU, Docker and the embedded server; each line OK/WARN/FAIL with a fix."""
    from tritonlab.doctor import run_checks

    results = []
    colors = {"OK": "green", "WARN": "yellow", "FAIL": "red"}
    for check in run_checks(server=not skip_server):
        results.append(check)
        if not as_json:
            fix = f"\n       [dim]fix: {check.fix}[/]" if check.fix and check.status != "OK" else ""
            console.print(f"[{colors[check.status]}]{check.status:<4}[/] {check.name}: {check.detail}{fix}")
    if as_json:
        print(json.dumps([c.as_dict() for c in results]))
    if any(c.status == "FAIL" for c in results):
        raise typer.Exit(1)


@app.command()
def lab(
    directory: Annotated[Path, typer.Option("--dir", help="Folder JupyterLab opens.")] = Path("labs"),
    port: Annotated[int | None, typer.Option(envvar="TRITONLAB_LAB_PORT", help="Default 8888, else free.")] = None,
    token: Annotated[str | None, typer.Option(envvar="TRITONLAB_LAB_TOKEN", help="Default: random.")] = None,
) -> None:
    """Open the course in JupyterLab on 127.0.0.1 (what `make lab` runs)."""
    from tritonlab.lab import run_lab

    try:
        raise typer.Exit(run_lab(directory.absolute(), port=port, token=token))  # resolve() raises on a link loop
    except TritonLabError as e:
        raise fail(e) from None


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="A model directory or a model repository.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check config.pbtxt files and repository layout against the rules Triton enforces (exit 1 on errors)."""
    from tritonlab.model_config import validate as run_validation

    report = run_validation(path)
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        colors = {"error": "red", "warning": "yellow"}
        for finding in report.findings:
            console.print(f"[{colors[finding.severity]}]{finding}[/]", highlight=False, soft_wrap=True)
        verdict = "[green]valid[/]" if report.valid else "[red]invalid[/]"
        console.print(f"{len(report.models)} model(s): {verdict} ({len(report.errors)} error(s), "
                      f"{len(report.findings) - len(report.errors)} warning(s))")  # fmt: skip
    if not report.valid:
        raise typer.Exit(1)


@app.command("check")
def check_command(
    selector: Annotated[str, typer.Argument(help="A lab (lab1) or one checkpoint (lab1.server_ready).")],
    workspace: Annotated[Path | None, typer.Option(help="Where the lab ran (default: current directory).")] = None,
    server: Annotated[str | None, typer.Option(help="HTTP URL of the Triton server (default: newest running).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verify a lab's checkpoints against real state; exit 0 only if all pass."""
    from tritonlab.checks.core import ServerInfo
    from tritonlab.checks.render import card_text
    from tritonlab.checks.runner import evaluate, newest_registered_server
    from tritonlab.checks.store import SET_ASIDE, workspace_dir

    info = ServerInfo(server) if server else newest_registered_server()
    try:
        where = workspace_dir(workspace)
        if workspace is not None and not where.is_dir():  # a typo would create a stray workspace
            raise TritonLabError(f"the workspace {workspace} does not exist",
                                 fix="pass the folder the lab ran in (or leave --workspace out)")  # fmt: skip
        results = evaluate([selector], where, info)
    except KeyError as e:
        raise fail(TritonLabError(e.args[0], fix="`tritonlab progress` lists the labs and checkpoints")) from None
    except TritonLabError as e:
        raise fail(e) from None
    for path, backup, why in SET_ASIDE:
        err.print(f"[yellow]note:[/] {path} was damaged ({why}): kept as {backup.name}, a new one was started",
                  highlight=False, soft_wrap=True)  # fmt: skip
    SET_ASIDE.clear()
    if as_json:
        print(json.dumps([r.as_dict() for r in results]))
    else:
        colors = {"PASS": "green", "FAIL": "red", "UNATTEMPTED": "dim", "ERROR": "yellow"}
        for r in results:
            console.print(f"[{colors[r.status]}]{card_text(r)}[/]", highlight=False)
        earned, total = sum(r.awarded for r in results), sum(r.points for r in results)
        console.print(f"[bold]{sum(r.passed for r in results)}/{len(results)} checkpoints pass, "
                      f"{earned:g}/{total:g} points[/]")  # fmt: skip
    if not all(r.passed for r in results):
        raise typer.Exit(1)


@app.command()
def progress(
    workspace: Annotated[Path | None, typer.Option(help="Where the labs ran (default: current directory).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every checkpoint of every lab with its last result and when."""
    from tritonlab.progress import progress_rows

    try:
        rows = progress_rows(workspace)
    except TritonLabError as e:
        raise fail(e) from None
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("lab", "checkpoint", "status", "points", "checked", "message")
    colors = {"PASS": "green", "FAIL": "red", "UNATTEMPTED": "dim", "ERROR": "yellow", "NOT RUN": "dim"}
    for row in rows:
        table.add_row(row["lab"], row["id"], f"[{colors[row['status']]}]{row['status']}[/]",
                      f"{row['awarded']:g}/{row['points']:g}", row["checked"], row["message"][:70])  # fmt: skip
    console.print(table)


@app.command()
def grade(
    submissions: Annotated[Path, typer.Argument(help="Folder or .zip: <student>/<lab>.ipynb or <student>.ipynb.")],
    lab: Annotated[str, typer.Option(help="Lab notebook name, e.g. 01_setup.")],
    course: Annotated[Path, typer.Option(help="nbgrader course directory to use (created if missing).")] = Path(
        "course"
    ),
    jobs: Annotated[int | None, typer.Option(help="Submissions graded at once (default: CPU count).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds allowed per submission before it gets 0.")] = 600.0,
    cell_timeout: Annotated[int, typer.Option(help="Seconds allowed per cell.")] = 120,
    memory_gib: Annotated[
        float | None, typer.Option(help="Memory per submission (kernel, Triton, all they start); default 6.")
    ] = None,
) -> None:
    """Grade a class: collect -> autograde (each with its own Triton) -> feedback -> course/grades.csv.

    Each kernel runs in a box (as root: its own uid, a memory cgroup, a process limit; see grading/sandbox.py).
    """
    import os

    from tritonlab.grading.course import grade_class

    os.environ["TRITONLAB_CELL_TIMEOUT"] = str(cell_timeout)

    def show(g: object) -> None:
        console.print(f"  {g.student}: {g.score:g}/{g.max_score:g} {g.status} {g.reason}".rstrip())  # type: ignore[attr-defined]

    try:
        started = time.monotonic()
        submissions, course = submissions.absolute(), course.absolute()  # resolve() raises on a link loop
        memory = {"memory_bytes": int(memory_gib * 2**30)} if memory_gib else {}
        grades = grade_class(submissions, lab, course, jobs=jobs, timeout=timeout, progress=show, **memory)
    except TritonLabError as e:
        raise fail(e) from None
    except OSError as e:  # the course folder cannot be created or written
        where = e.filename or course
        raise fail(TritonLabError(f"cannot write {where}: {e.strerror}",
                                  fix="pass --course a folder you may write")) from None  # fmt: skip
    minutes = (time.monotonic() - started) / 60
    console.print(f"[bold]{len(grades)} submissions graded in {minutes * 60:.0f} s "
                  f"({len(grades) / minutes:.1f}/min)[/]; grades: {course / 'grades.csv'}, "
                  f"feedback: {course / 'feedback'}")  # fmt: skip


def parse_shapes(values: list[str]) -> dict[str, list[int]]:
    """--shape NAME:d1,d2 (repeatable) as {NAME: [d1, d2]}."""
    shapes = {}
    for value in values:
        name, sep, dims = value.partition(":")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            sep = ""
        if not name or not sep:
            raise TritonLabError(f"cannot read --shape {value!r}", fix="write NAME:d1,d2, e.g. --shape input_ids:128")
    return shapes


@app.command()
def bench(
    model: Annotated[str, typer.Argument(help="The model to measure.")],
    tool: Annotated[str, typer.Option(help="auto (perf_analyzer if installed), perf_analyzer or builtin.")] = "auto",
    concurrency: Annotated[
        str, typer.Option(help='Levels: "1:32:x2" (doubling), "1:16:4" (start, end, step), "1,4,16" or "8".')
    ] = "1:32:x2",
    rate: Annotated[
        list[float] | None, typer.Option(help="Request rate per second (open loop), instead of concurrency.")
    ] = None,
    protocol: Annotated[str, typer.Option(help="grpc or http.")] = "grpc",
    duration: Annotated[float, typer.Option(help="Seconds measured per level.")] = 3.0,
    warmup: Annotated[float, typer.Option(help="Seconds of load before each measurement (builtin).")] = 1.0,
    url: Annotated[str | None, typer.Option(help="HTTP URL of the server (default: newest tritonlab server).")] = None,
    grpc_url: Annotated[str | None, typer.Option(help="gRPC URL, for a server tritonlab did not start.")] = None,
    shape: Annotated[list[str] | None, typer.Option(help="NAME:d1,d2 for an input with -1 dims.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per request.")] = 1,
    label: Annotated[str, typer.Option(help="Name of what is measured (e.g. a config variant).")] = "",
    stability: Annotated[float, typer.Option(help="perf_analyzer's stability percentage (-s).")] = 10.0,
    slo: Annotated[float | None, typer.Option(help="p99 latency SLO in ms: report the best level under it.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    save: Annotated[Path | None, typer.Option(help="Append the rows to this JSON results file.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write throughput vs p99 latency to this PNG.")] = None,
) -> None:
    """Measure a model's throughput and latency at several loads (perf_analyzer or the builtin generator)."""
    from tritonlab.bench import plot_curve, run_bench
    from tritonlab.server import registry

    try:
        if url is None:
            records = registry.records()
            if not records:
                raise TritonLabError("no running server", fix="start one with `tritonlab up` (or pass --url)")
            newest = max(records, key=lambda r: r.started_at)
            url, grpc_url = newest.http_url, grpc_url or newest.grpc_url
        table = run_bench(
            url, model, tool=tool, concurrency=concurrency, request_rate=rate or None, protocol=protocol,
            duration_s=duration, warmup_s=warmup, shapes=parse_shapes(shape or []), batch_size=batch_size,
            label=label, progress=not as_json, save_to=save, grpc_url=grpc_url, stability_percentage=stability,
        )  # fmt: skip
    except TritonLabError as e:
        raise fail(e) from None
    if plot is not None:
        plot_curve(table, slo_ms=slo, save_to=plot)
    best = table.best_under_slo(slo) if slo is not None else None
    if as_json:
        result = table.to_dict()
        if slo is not None:
            result["slo_p99_ms"], result["best_under_slo"] = slo, best.to_dict() if best else None
        print(json.dumps(result), flush=True)
        return
    out = console if console.is_terminal else Console(width=160)  # a pipe or log: no 80-column squeeze
    out.print(table.rich_table())
    if slo is not None:
        if best is None:
            out.print(f"[yellow]no level meets p99 <= {slo:g} ms[/]")
        else:
            out.print(f"best under p99 <= {slo:g} ms: [bold]{best.load}[/] {best.throughput:,.1f} infer/s "
                          f"(p99 {best.p99_ms:.2f} ms)")  # fmt: skip
    for path, what in ((save, "results"), (plot, "plot")):
        if path is not None:
            out.print(f"{what}: {path}")


from tritonlab.monitor.cli import monitor_app  # noqa: E402 (light: typer only; the rest loads on use)

app.add_typer(monitor_app, name="monitor")

course_app = typer.Typer(help="Build and check the student notebooks (labs/) from solutions/.", no_args_is_help=True)
app.add_typer(course_app, name="course")


@course_app.command("build")
def course_build() -> None:
    """Regenerate labs/ from solutions/ with nbgrader generate_assignment."""
    from tritonlab.grading.course import LABS, generate_labs

    for path in generate_labs(LABS):
        console.print(f"wrote {path}")


@course_app.command("check")
def course_check() -> None:
    """Exit 1 if labs/ is not what solutions/ generate (run `tritonlab course build`)."""
    from tritonlab.grading.course import stale_labs

    stale = stale_labs()
    if stale:
        raise fail(TritonLabError(f"labs/ is out of date for: {', '.join(stale)}", fix="tritonlab course build"))
    console.print("labs/ is up to date with solutions/")


image_app = typer.Typer(help="The CPU Triton image for the docker backend, built with no registry.",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(image_app, name="image")


@image_app.command("build")
def image_build(
    force: Annotated[bool, typer.Option("--force", help="Rebuild every step, ignoring the cache.")] = False,
    mirror: Annotated[str | None, typer.Option(help="Debian mirror for debootstrap (default: the manifest's).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """debootstrap a Debian base, install the pinned wheels, tag it from env/versions.toml (cached)."""
    from tritonlab.container.image import ImageSpec, build_image

    try:
        report = build_image(ImageSpec.from_manifest(mirror), force=force, say=err.print if as_json else console.print)
    except TritonLabError as e:
        raise fail(e) from None
    if as_json:
        print(json.dumps({"tag": report.tag, "id": report.image_id, "cached": report.cached,
                          "seconds": round(report.seconds, 2), "steps": report.steps}))  # fmt: skip
    else:
        console.print(f"[bold green]built[/] {report.summary()}")


@image_app.command("status")
def image_status_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Whether the CPU image (and its base) is in the Docker engine."""
    from tritonlab.container.image import image_status

    try:
        info = image_status()
    except TritonLabError as e:
        raise fail(e) from None
    if as_json:
        print(json.dumps(info))
        return
    if info["present"]:
        console.print(f"{info['tag']}: present ({info['id'][7:19]}, {info['size_mb']} MB)")
    else:
        console.print(f"{info['tag']}: [yellow]not built[/] (run `tritonlab image build`)")


def main() -> None:
    try:
        app()
    except OSError as e:  # the last net under every command: a path the user cannot use is a message, not a traceback
        where = f" {e.filename}" if e.filename else ""
        err.print(f"[bold red]error:[/] {e.strerror or e}:{where}", highlight=False, soft_wrap=True)
        err.print("[bold]fix:[/] check that path and its permissions (tritonlab keeps its own files in "
                  "$TRITONLAB_CACHE_DIR, default ~/.cache/tritonlab: it must be yours)", highlight=False)  # fmt: skip
        sys.exit(1)


if __name__ == "__main__":
    main()
