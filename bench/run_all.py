"""The course's benchmark suite: run every benchmark in bench/, then write bench/results.json and bench/RESULTS.md.

    .venv/bin/python bench/run_all.py              # what `make bench` runs (about an hour on 2 cores)
    .venv/bin/python bench/run_all.py --tiny       # every benchmark at a tiny size (the smoke test), into a temp dir
    .venv/bin/python bench/run_all.py --reuse      # no runs: re-read bench/results/*.json and rewrite the reports
    .venv/bin/python bench/run_all.py --only serving llm     # some steps; --skip docker ...

Each step runs one existing script as a subprocess with ``--out bench/results/cpu_<step>.json`` (its own log in
bench/results/logs/), so every figure comes from the script that measures it, with the same command a reader can
re-run alone. The GPU figures are not measured here (no GPU on these machines): they are read from the committed
bench/results/h200_*.json with their dates. A figure whose step failed, was skipped, or whose file is absent is
``null`` in results.json with ``"status": "not measured"`` and the reason in its ``_meta`` - never a number from
elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"


@dataclass
class Step:
    name: str
    script: str
    full: list[str]
    tiny: list[str]
    out: str  # file name in the results dir
    what: str
    extra: list[str] = field(default_factory=list)


STEPS = [
    Step("setup", "setup_time.py", ["--reruns", "5"], ["--no-cold", "--reruns", "1"], "cpu_setup.json",
         "cold env/setup.sh on a fresh venv (clean checkout of HEAD), then re-runs"),
    Step("notebooks", "notebooks.py", ["--reps", "1"], ["--labs", "00_welcome"], "cpu_notebooks.json",
         "each solution notebook top to bottom (nbclient, as the course CI), labs 1-5 end to end"),
    Step("server_startup", "server_startup.py", ["--starts", "10", "--setup-runs", "0"],
         ["--starts", "1", "--setup-runs", "0"], "cpu_server_startup.json",
         "embedded server: cold staging, start-to-ready (example repo, explicit mode), stop"),
    Step("docker", "docker_backend.py", ["--starts", "5"], ["--starts", "1", "--no-cold-build"],
         "cpu_docker_backend.json", "docker backend beside the embedded server, interleaved; cold image build"),
    Step("client", "loadgen_vs_perf_analyzer.py", ["--reps", "3", "--duration", "5"],
         ["--concurrency", "1", "--reps", "1", "--duration", "3"], "cpu_loadgen_vs_perf_analyzer.json",
         "builtin load generator vs perf_analyzer 2.51.0 (add_sub, gRPC), interleaved"),
    Step("serving", "lab3_serving.py", ["--device", "cpu", "--reps", "3"],
         ["--device", "cpu", "--reps", "1", "--seconds", "1", "--warmup", "0.5", "--efficiency-concurrency", "2",
          "--efficiency-instances", "1"], "cpu_lab3_serving.json",
         "lab 3 classifier: dynamic batching gain, Triton vs naive pipeline, serving efficiency"),
    Step("llm", "llm_batching.py", ["--requests", "192"],
         ["--requests", "4", "--concurrency", "4", "--repetitions", "1"],
         "cpu_llm_batching.json", "lab 5 track B engine: in-flight vs static batching, TTFT, ITL, build time"),
    Step("prometheus", "prometheus_scrape.py", ["--runs", "5"], ["--runs", "1"], "cpu_prometheus_scrape.json",
         "Prometheus start-to-ready and first scrape of Triton"),
    Step("grading", "grading.py", ["--lab", "02_repository", "--students", "20", "--jobs", "2"],
         ["--lab", "02_repository", "--students", "1", "--jobs", "1"], "cpu_grading.json",
         "a class of lab-2 submissions graded the instructor way (nbgrader autograde + feedback)"),
]  # fmt: skip
STEP_NAMES = [s.name for s in STEPS]

H200 = {
    "lab3": "h200_lab3_serving.json",
    "llm": "h200_llm_batching.json",
    "gpu_embedded": "h200_gpu_embedded.json",
}
# The committed h200_lab3_serving.json does not record its command; these are its settings as the file states them.
# What measures the H200 files (bench/device/README.md): shown when a file is absent.
H200_COMMANDS = {"h200_llm_batching.json": "bash bench/device/h200_llm.sh  (device tool, kind nvidia-h200)"}
H200_LAB3_COMMAND = (
    "python bench/lab3_serving.py --device cuda --reps 3 --seconds 3 --out bench/results/h200_lab3_serving.json"
)


# ------------------------------------------------------------------------------------------------------ machine
def machine() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )  # fmt: skip
    mem_gib = None
    with contextlib.suppress(OSError, StopIteration, ValueError):
        total = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        mem_gib = round(int(total.split()[1]) / 2**20, 1)
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpu": None,
    }


def versions() -> dict[str, str]:
    out = {}
    for dist in ("tritonlab", "nvidia-pytriton", "tritonclient", "torch", "numpy", "grpcio", "transformers",
                 "nbclient", "nbgrader", "jupyterlab", "docker"):  # fmt: skip
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["tritonserver"] = "2.51.0 (in nvidia-pytriton 0.7.0)" if out["nvidia-pytriton"] == "0.7.0" else "?"
    for binary, args in (("prometheus", ["--version"]), ("dockerd", ["--version"])):
        try:
            text = subprocess.run([binary, *args], capture_output=True, text=True, timeout=20)
            out[binary] = (text.stdout or text.stderr).splitlines()[0].strip()
        except (OSError, IndexError, subprocess.SubprocessError):
            out[binary] = "not found"
    out["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip() or "?"  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------------- running
def command_line(step: Step, results_dir: Path, tiny: bool) -> list[str]:
    out = results_dir / step.out
    shown = os.path.relpath(out, ROOT) if out.is_relative_to(ROOT) else str(out)
    return [".venv/bin/python", f"bench/{step.script}", *(step.tiny if tiny else step.full), "--out", shown]


def run_step(step: Step, results_dir: Path, tiny: bool) -> dict[str, Any]:
    cmd = command_line(step, results_dir, tiny)
    log = results_dir / "logs" / f"{step.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    (results_dir / step.out).unlink(missing_ok=True)  # a figure is from this run or absent
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = [round(x, 1) for x in os.getloadavg()]
    print(f"[bench] {step.name}: {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.run([sys.executable, *cmd[1:]], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    seconds = time.perf_counter() - t0
    load_after = [round(x, 1) for x in os.getloadavg()]
    status = "ok" if proc.returncode == 0 and (results_dir / step.out).is_file() else "failed"
    print(f"[bench] {step.name}: {status} in {seconds:.0f} s (log {log})", flush=True)
    if status != "ok":
        print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:]), flush=True)
    return {
        "status": status,
        "exit": proc.returncode,
        "seconds": round(seconds, 1),
        "started": started,
        "load_average": {"before": load_before, "after": load_after},
        "command": shlex.join(cmd),
        "log": os.path.relpath(log, ROOT) if log.is_relative_to(ROOT) else str(log),
    }


# ---------------------------------------------------------------------------------------------------- figures
class NotMeasured(Exception):
    pass


def spread(values: list[float], digits: int = 3) -> dict[str, Any]:
    values = [v for v in values if v is not None]
    if not values:
        return {}
    return {"min": round(min(values), digits), "max": round(max(values), digits), "n": len(values)}


def git_date(path: Path) -> str | None:
    out = subprocess.run(["git", "log", "-1", "--format=%cI", "--", str(path)], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()  # fmt: skip
    return out or None


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotMeasured(f"{os.path.relpath(path, ROOT) if path.is_relative_to(ROOT) else path} is absent")
    return json.loads(path.read_text())


Extractor = Callable[[dict[str, Any]], tuple[float, dict[str, Any]]]


def _setup_cold(d):
    if "cold" not in d:
        raise NotMeasured("the setup step ran without a cold setup (--no-cold)")
    c = d["cold"]
    return c["median_s"], {"spread": {"min": c["min_s"], "max": c["max_s"], "n": c["n"]}, "phases_s": c["phases_s"],
                           "green": c.get("green"), "target_s": d.get("target_cold_s")}  # fmt: skip


def _setup_rerun(d):
    r = d["rerun"]
    return r["median_s"], {"spread": {"min": r["min_s"], "max": r["max_s"], "n": r["n"]}, "checkout": r["checkout"]}


def _notebook(n: int) -> Extractor:
    def extract(d):
        name = d["labs"].get(f"lab{n}")
        if name is None:
            raise NotMeasured(d["absent"].get(str(n), f"lab {n} was not run"))
        nb = d["notebooks"][name]
        p = nb["profile"]
        meta = {
            "spread": {"min": nb["min_s"], "max": nb["max_s"], "n": nb["n"]}, "notebook": f"solutions/{name}.ipynb",
            "kernel_startup_s": p["kernel_startup_s"], "kernel_s": p["kernel_s"], "judge_s": p["judge_s"],
            "green": nb["green"],
        }  # fmt: skip
        if not nb["green"]:  # the time is real, but it is not a time to green: say so next to it
            errors = nb["errors"][:2]
            first = "; ".join(f"{c}: {e}: {(v.splitlines() or [''])[0][:110]}" for c, e, v in errors)
            meta["caveat"] = f"NOT green: {first}; failing {sorted(nb['failing'])}"
        return nb["median_s"], meta

    return extract


def _notebooks_total(d):
    t = d["course_total"]
    if not t.get("labs_included"):
        raise NotMeasured("no course notebook was run")
    not_green = [name for name in d["labs"].values() if not d["notebooks"][name]["green"]]
    meta = {"spread": {"min": t["min_s"], "max": t["max_s"], "n": t["n"]}, "labs_included": t["labs_included"],
            "complete": t["complete"], "target_s": d.get("target_total_s"), "green": not not_green}  # fmt: skip
    if not_green:
        meta["caveat"] = f"NOT green: {', '.join(not_green)} did not pass every checkpoint in this run"
    if not t["complete"]:
        meta["incomplete"] = "NOT the whole course: " + "; ".join(d["absent"].values())
    return t["median_s"], meta


def _server(backend: str) -> Extractor:
    def extract(d):
        r, s = d[f"{backend}_ready"], d[f"{backend}_stop"]
        return r["median_s"], {"spread": {"min": r["min_s"], "max": r["max_s"], "n": r["n"]},
                               "stop_median_s": s["median_s"], "stop_spread": {"min": s["min_s"], "max": s["max_s"]},
                               "side_by_side": "embedded and docker starts interleaved in one run"}  # fmt: skip

    return extract


def _client(c: int) -> Extractor:
    def extract(d):
        entry = d["concurrency"].get(str(c))
        if entry is None:
            raise NotMeasured(f"concurrency {c} was not run")
        pairs = zip(entry["perf_analyzer"]["runs"], entry["builtin"]["runs"], strict=True)
        paired = [b["throughput"] / p["throughput"] for p, b in pairs]
        return entry["ratio_throughput"], {
            "spread": spread(paired), "spread_of": "per-repetition builtin / perf_analyzer ratios",
            "builtin_infer_per_s": entry["builtin"]["throughput_median"],
            "perf_analyzer_infer_per_s": entry["perf_analyzer"]["throughput_median"],
            "ratio_paired_median": entry["ratio_paired_median"], "protocol": d["protocol"], "model": d["model"],
        }  # fmt: skip

    return extract


def _ratios_of(section: dict[str, Any], a: str, b: str) -> list[float]:
    if "per_rep_ratios" in section:
        return section["per_rep_ratios"]
    if "throughputs" in section.get(a, {}) and "throughputs" in section.get(b, {}):
        return [x / y for x, y in zip(section[a]["throughputs"], section[b]["throughputs"], strict=True)]
    return []


def _dynbatch(d):
    s = d["dynamic_batching"]
    ratios = _ratios_of(s, "dynamic batching", "no batching")
    return s["throughput_ratio"], {
        "spread": spread(ratios) or "per-repetition figures not recorded in the file",
        "spread_of": "per-repetition ratios (interleaved)", "concurrency": s["concurrency"],
        "with_batching_infer_per_s": round(s["dynamic batching"]["throughput"], 1),
        "without_infer_per_s": round(s["no batching"]["throughput"], 1),
        "avg_batch": round(s["dynamic batching"]["server_avg_batch"], 2), "device": d.get("device"),
    }  # fmt: skip


def _naive(d):
    if "naive_baseline" not in d:
        raise NotMeasured("the lab-3 run skipped the naive baseline (--no-naive)")
    s = d["naive_baseline"]
    ratios = _ratios_of(s, "triton_ensemble", "naive")
    return s["throughput_ratio"], {
        "spread": spread(ratios) or "per-repetition figures not recorded in the file",
        "spread_of": "per-repetition ratios", "concurrency": s["concurrency"],
        "triton_ensemble_per_s": round(s["triton_ensemble"]["throughput"], 1),
        "naive_per_s": round(s["naive"]["throughput"], 1), "device": d.get("device"),
    }  # fmt: skip


def _efficiency(d):
    s = d["serving_efficiency"]
    return s["fraction"], {
        "spread": "one figure: Triton's best configuration over the in-process median of 3 windows",
        "batch": s["batch"], "triton_best_samples_per_s": round(s["triton_best_samples_per_s"], 1),
        "in_process_samples_per_s": s["in_process_samples_per_s"], "device": d.get("device"),
    }  # fmt: skip


def _llm_ratio(d):
    r = d["throughput_ratio_inflight_over_static"]
    return round(r["median"], 3), {
        "spread": spread(r["per_repetition"]), "spread_of": "per-repetition ratios (strategies alternate)",
        "inflight_tok_per_s": round(d["inflight"]["output_token_throughput"], 1),
        "static_tok_per_s": round(d["static"]["output_token_throughput"], 1),
        "workload": {k: d["workload"].get(k) for k in ("requests", "concurrency", "output_lengths", "repetitions",
                                                        "dtype")},
        "build_seconds": d.get("build_seconds"), "device": d.get("device", "cpu"),
    }  # fmt: skip


def _llm_latency(metric: str) -> Extractor:
    def extract(d):
        inflight = d["inflight"]
        per_run = [run[metric]["p50"] for run in inflight.get("runs", [])]
        key = {"time_to_first_token": "time_to_first_token_ms", "inter_token_latency": "inter_token_latency_ms"}[metric]
        return round(inflight[key]["p50"], 2), {
            "spread": spread(per_run, 2), "spread_of": "p50 of each repetition (in-flight batching)",
            "p99_ms": round(inflight[key]["p99"], 2), "static_p50_ms": round(d["static"][key]["p50"], 2),
            "static_p99_ms": round(d["static"][key]["p99"], 2),
        }  # fmt: skip

    return extract


def _grading(d):
    runs = d["runs"]
    best = max(runs, key=lambda r: r["submissions_per_minute"])
    per = best.get("seconds_per_submission", [])
    return best["submissions_per_minute"], {
        "spread": spread(per, 1), "spread_of": "seconds per submission",
        "lab": d.get("lab"), "students": d["students"], "jobs": best["jobs"], "seconds": best["seconds"],
        "all_runs": [{k: r[k] for k in ("jobs", "seconds", "submissions_per_minute")} for r in runs],
    }  # fmt: skip


# key -> (step or "h200:<file>", file name, extractor)
FIGURES: dict[str, tuple[str, str, Extractor]] = {
    "setup.cold_s": ("setup", "cpu_setup.json", _setup_cold),
    "setup.rerun_s": ("setup", "cpu_setup.json", _setup_rerun),
    "notebooks.total_s": ("notebooks", "cpu_notebooks.json", _notebooks_total),
    **{f"notebooks.lab{n}_s": ("notebooks", "cpu_notebooks.json", _notebook(n)) for n in range(1, 6)},
    "server.embedded_ready_s": ("docker", "cpu_docker_backend.json", _server("embedded")),
    "server.docker_ready_s": ("docker", "cpu_docker_backend.json", _server("docker")),
    **{f"client.ratio_c{c}": ("client", "cpu_loadgen_vs_perf_analyzer.json", _client(c)) for c in (1, 8, 32)},
    "serving.dynbatch_gain_c16_cpu": ("serving", "cpu_lab3_serving.json", _dynbatch),
    "serving.vs_naive_c16_cpu": ("serving", "cpu_lab3_serving.json", _naive),
    "serving.dynbatch_gain_c64_h200": ("h200", H200["lab3"], _dynbatch),
    "serving.efficiency_h200": ("h200", H200["lab3"], _efficiency),
    "llm.inflight_over_static_cpu": ("llm", "cpu_llm_batching.json", _llm_ratio),
    "llm.ttft_p50_ms_cpu": ("llm", "cpu_llm_batching.json", _llm_latency("time_to_first_token")),
    "llm.itl_p50_ms_cpu": ("llm", "cpu_llm_batching.json", _llm_latency("inter_token_latency")),
    "llm.inflight_over_static_h200": ("h200", H200["llm"], _llm_ratio),
    "grading.submissions_per_min": ("grading", "cpu_grading.json", _grading),
}
KEYS = list(FIGURES)


def h200_meta(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    command = data.get("command")
    if command is None and path.name == H200["lab3"]:
        command = H200_LAB3_COMMAND + "  (reconstructed from the file's settings; the file does not record it)"
    gpu = data.get("device") if isinstance(data.get("device"), str) and "H200" in str(data.get("device")) else None
    mach = data.get("machine")
    if isinstance(mach, dict):
        gpu = mach.get("gpu") or gpu
    return {
        "command": command or "see bench/device/README.md",
        "date": data.get("date") or git_date(path) or "unknown",
        "date_source": "the file" if data.get("date") else "the commit that added the file",
        "machine": f"NVIDIA H200 device machine ({gpu or 'NVIDIA H200'}), measured there, not in this run",
        "source": os.path.relpath(path, ROOT) if path.is_relative_to(ROOT) else str(path),
    }


def aggregate(results_dir: Path, steps: dict[str, dict[str, Any]], mach: dict[str, Any], tiny: bool = False,
              h200_dir: Path = RESULTS_DIR) -> dict[str, Any]:  # fmt: skip
    """results.json: every key of the issue, its median (or null) and its ``_meta``."""
    mach_text = f"{mach['host']}: {mach['cores']} cores ({mach['cpu']}), Python {mach['python']}, no GPU"
    out: dict[str, Any] = {}
    for key, (step, filename, extract) in FIGURES.items():
        if step == "h200":
            path = h200_dir / filename
            meta: dict[str, Any] = {}
            try:
                data = load(path)
                meta = h200_meta(path, data)
                value, extra = extract(data)
            except (NotMeasured, KeyError, TypeError, ValueError) as exc:
                reason = str(exc) if isinstance(exc, NotMeasured) else f"{path.name} lacks {exc}"
                out[key] = None
                out[f"{key}_meta"] = {
                    "command": H200_COMMANDS.get(filename, "see bench/device/README.md"), "date": None,
                    "machine": "NVIDIA H200 device machine", **meta, "status": "not measured",
                    "reason": f"{reason} (H200 figure, measured on the device machine, not here)",
                }  # fmt: skip
                continue
        else:
            path = results_dir / filename
            ran = steps.get(step, {})
            meta = {
                "command": ran.get("command") or shlex.join(command_line(_step(step), results_dir, tiny)),
                "date": ran.get("started") or "unknown",
                "machine": mach_text,
                "source": os.path.relpath(path, ROOT) if path.is_relative_to(ROOT) else str(path),
                "via": "bench/run_all.py --tiny (smoke size)" if tiny else "make bench (bench/run_all.py)",
            }
            try:
                if ran and ran["status"] == "skipped":
                    raise NotMeasured(f"step '{step}' was skipped in this run")
                if ran and ran["status"] != "ok":
                    raise NotMeasured(f"step '{step}' {ran['status']} (exit {ran.get('exit')}); see {ran.get('log')}")
                data = load(path)
                if data.get("command"):
                    meta["command"] = data["command"]  # what wrote the file (it may be re-measured on its own)
                if data.get("date"):
                    meta["date"] = data["date"]
                elif not ran:  # a file from an earlier run: the commit that wrote it dates it
                    meta["date"] = f"{git_date(path) or 'unknown'} (commit date of the file)"
                value, extra = extract(data)
            except (NotMeasured, KeyError, TypeError, ValueError) as exc:
                reason = str(exc) if isinstance(exc, NotMeasured) else f"{path.name} lacks {exc}"
                out[key] = None
                out[f"{key}_meta"] = {**meta, "status": "not measured", "reason": reason}
                continue
        out[key] = value
        out[f"{key}_meta"] = {**meta, "status": "measured", "median": value, **extra}
    return out


def run_period(steps: dict[str, dict[str, Any]]) -> str:
    """'from <first step start>, <minutes of steps>' as the step records say."""
    starts = sorted(s["started"] for s in steps.values() if s.get("started"))
    if not starts:
        return "(no step ran)"
    total = sum(s.get("seconds") or 0 for s in steps.values())
    return f"from {starts[0]}, {total / 60:.0f} min of steps"


def _step(name: str) -> Step:
    return next(s for s in STEPS if s.name == name)


# ---------------------------------------------------------------------------------------------------- RESULTS.md
LABELS = {
    "setup.cold_s": ("cold `env/setup.sh`, fresh venv", "s", "<= 180 s"),
    "setup.rerun_s": ("`env/setup.sh` re-run", "s", ""),
    "notebooks.total_s": ("course end to end (solutions, labs 1-5)", "s", "<= 360 s"),
    **{f"notebooks.lab{n}_s": (f"lab {n} solution notebook", "s", "") for n in range(1, 6)},
    "server.embedded_ready_s": ("embedded server start-to-ready", "s", "<= 3 s"),
    "server.docker_ready_s": ("docker server start-to-ready", "s", "<= 5 s"),
    **{f"client.ratio_c{c}": (f"builtin / perf_analyzer throughput, c={c}", "x", ">= 0.9") for c in (1, 8, 32)},
    "serving.dynbatch_gain_c16_cpu": ("dynamic batching gain, lab 3, c=16, CPU", "x", ""),
    "serving.vs_naive_c16_cpu": ("Triton ensemble / naive pipeline, c=16, CPU", "x", ""),
    "serving.dynbatch_gain_c64_h200": ("dynamic batching gain, lab 3, c=64, H200", "x", ""),
    "serving.efficiency_h200": ("serving efficiency, batch 32, H200", "fraction", ""),
    "llm.inflight_over_static_cpu": ("in-flight / static output tokens/s, CPU", "x", ""),
    "llm.ttft_p50_ms_cpu": ("TTFT p50 (in-flight), CPU", "ms", ""),
    "llm.itl_p50_ms_cpu": ("ITL p50 (in-flight), CPU", "ms", ""),
    "llm.inflight_over_static_h200": ("in-flight / static output tokens/s, H200", "x", ""),
    "grading.submissions_per_min": ("lab-2 submissions graded per minute (class of 20)", "/min", ""),
}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _spread_text(meta: dict[str, Any]) -> str:
    s = meta.get("spread")
    if isinstance(s, dict) and s:
        of = f", {meta['spread_of']}" if meta.get("spread_of") else ""
        return f"{_fmt(s.get('min'))}-{_fmt(s.get('max'))} (n={s.get('n')}{of})"
    return str(s) if s else "-"


def render_markdown(report: dict[str, Any]) -> str:
    res, mach, ver = report["results"], report["machine"], report["versions"]
    lines = [
        "# tritonlab benchmark results",
        "",
        f"Measured by `{report['command']}` {report['period']} (report written at git {ver.get('git_commit')}); "
        f"all CPU figures below come from that one run, each ratio from repetitions interleaved side by side. Raw "
        "figures: "
        f"`{report['results_dir']}/*.json` (each with its own command); per-step logs (not committed): "
        f"`{report['results_dir']}/logs/`.",
        "",
        f"- **Machine:** {mach['host']}, {mach['cores']} cores ({mach['cpu']}), {mach['memory_gib']} GiB, "
        f"{mach['os']}, Python {mach['python']}, no GPU. Load average (1/5/15 min) before and after each step: "
        "see the last table.",
        "- **Noise:** the load averages per step (last table) say how busy the machine was; on a busy machine "
        "throughput figures drift by tens of percent between repetitions (see each spread). Ratios are measured "
        "side by side (interleaved repetitions), which cancels most of the drift; absolute seconds and rates do not."
        + (f" {report['note']}" if report.get("note") else ""),
        "- **Versions:** " + ", ".join(f"{k} {v}" for k, v in ver.items() if k != "git_commit"),
        "- **H200 figures** are not measured in this run (no GPU here): they are read from the committed "
        "`bench/results/h200_*.json`, with the date of each.",
        "",
        "## Figures (`bench/results.json`)",
        "",
        "| key | what | median | spread (min-max, n) | target | date | command |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in KEYS:
        label, unit, target = LABELS[key]
        meta = res[f"{key}_meta"]
        value = res[key]
        if value is None:
            shown = f"**not measured**: {meta.get('reason')}"
        else:
            shown = f"{_fmt(value)} {unit}"
            for note in ("incomplete", "caveat"):
                if meta.get(note):
                    shown += f" ({meta[note]})"
        command = meta.get("command", "")
        lines.append(f"| `{key}` | {label} | {shown} | {_spread_text(meta)} | {target} | {meta.get('date', '')} | "
                     f"`{command}` |")  # fmt: skip
    lines += ["", "## More figures from the same files", ""]
    lines += _more(report)
    lines += ["", "## Steps of this run", "", "| step | what | status | started | wall s | load before / after | "
              "command |", "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for step in STEPS:
        ran = report["steps"].get(step.name)
        if ran:
            load = ran.get("load_average")
            load_text = f"{load['before']} / {load['after']}" if load else "-"
            lines.append(f"| {step.name} | {step.what} | {ran['status']} | {ran.get('started') or '-'} | "
                         f"{ran['seconds']} | {load_text} | `{ran['command']}` |")  # fmt: skip
        elif (Path(report["results_dir_abs"]) / step.out).is_file():
            data = json.loads((Path(report["results_dir_abs"]) / step.out).read_text())
            lines.append(f"| {step.name} | {step.what} | run separately (see the note) | {data.get('date', '-')} | - "
                         f"| - | `{data.get('command', '-')}` |")  # fmt: skip
        else:
            lines.append(f"| {step.name} | {step.what} | not run | - | - | - | - |")
    return "\n".join(lines) + "\n"


def _more(report: dict[str, Any]) -> list[str]:
    res = report["results"]
    lines: list[str] = []
    m = res["server.embedded_ready_s_meta"], res["server.docker_ready_s_meta"]
    if all(x.get("status") == "measured" for x in m):
        lines.append(f"- Server stop: embedded median {m[0]['stop_median_s']} s, docker {m[1]['stop_median_s']} s.")
    for key in ("llm.ttft_p50_ms_cpu", "llm.itl_p50_ms_cpu"):
        x = res[f"{key}_meta"]
        if x.get("status") == "measured":
            lines.append(f"- {LABELS[key][0]}: p99 {x['p99_ms']} ms; static batching p50 {x['static_p50_ms']} ms, "
                         f"p99 {x['static_p99_ms']} ms.")  # fmt: skip
    x = res["llm.inflight_over_static_cpu_meta"]
    if x.get("status") == "measured":
        lines.append(f"- LLM engine build (CPU): {x.get('build_seconds')} s (cold, cache hit); in-flight "
                     f"{x['inflight_tok_per_s']} vs static {x['static_tok_per_s']} output tok/s; workload "
                     f"{x['workload']}.")  # fmt: skip
    x = res["serving.dynbatch_gain_c16_cpu_meta"]
    if x.get("status") == "measured":
        lines.append(f"- Lab 3 on the CPU: {x['with_batching_infer_per_s']} infer/s with dynamic batching (average "
                     f"batch {x['avg_batch']}) vs {x['without_infer_per_s']} without.")  # fmt: skip
    x = res["grading.submissions_per_min_meta"]
    if x.get("status") == "measured":
        lines.append(f"- Grading: {x['students']} {x['lab']} submissions in {x['seconds']} s with {x['jobs']} at "
                     f"once; runs {x['all_runs']}.")  # fmt: skip
    x = res["setup.cold_s_meta"]
    if x.get("status") == "measured":
        lines.append("- Cold setup phases (s): " + ", ".join(f"{k}: {v}" for k, v in x["phases_s"].items()) + ".")
    raw = report.get("raw", {})
    if "prometheus" in raw:
        p = raw["prometheus"]
        lines.append(f"- Prometheus: start-to-ready median {p['start_to_ready']['median_s']} s, first scrape of "
                     f"Triton {p['start_to_first_scrape']['median_s']} s.")  # fmt: skip
    if "server_startup" in raw:
        s = raw["server_startup"]
        lines.append(f"- Embedded server alone: cold staging {s['cold_stage_s']} s; start-to-ready median "
                     f"{s['start_to_ready_example_repo']['median_s']} s (example repo), "
                     f"{s['start_to_ready_explicit_no_models']['median_s']} s (explicit, no models); stop "
                     f"{s['stop']['median_s']} s.")  # fmt: skip
    if "docker" in raw and raw["docker"].get("image_build"):
        lines.append(f"- Docker CPU image build: {raw['docker']['image_build']}.")
    if "gpu_embedded" in raw:
        g = raw["gpu_embedded"]
        lines.append(f"- H200, torch MLP on the embedded server ({H200['gpu_embedded']}, {g['_date']}): "
                     f"GPU/CPU throughput by concurrency {g.get('gpu_over_cpu_throughput')}.")  # fmt: skip
    if "notebooks" in raw:
        lines += ["", "### Notebook profile (the median run of each)", ""]
        lines += notebook_profile(raw["notebooks"])
    return lines


def notebook_profile(nb: dict[str, Any], top: int = 5) -> list[str]:
    lines = ["| notebook | wall s | kernel start s | in cells s | judging s | slowest cells (kernel + judging s) |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, entry in nb["notebooks"].items():
        p = entry["profile"]
        slow = sorted(p["cells"], key=lambda c: -(c["kernel_s"] + c["judge_s"]))[:top]
        cells = "; ".join(
            f"#{c['index']}{' ' + c['id'] if c['id'] else ''} `{c['first_line'].replace('|', '/')}` "
            f"{c['kernel_s']:.1f}+{c['judge_s']:.1f}" for c in slow
        )  # fmt: skip
        lines.append(f"| {name} | {entry['median_s']} | {p['kernel_startup_s']:.1f} | {p['kernel_s']:.1f} | "
                     f"{p['judge_s']:.1f} | {cells} |")  # fmt: skip
    return lines


# ---------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="every benchmark at a tiny size (a smoke test)")
    parser.add_argument("--reuse", action="store_true", help="run nothing; rebuild the reports from the results dir")
    parser.add_argument("--only", nargs="+", choices=STEP_NAMES, default=None)
    parser.add_argument("--skip", nargs="+", choices=STEP_NAMES, default=[])
    parser.add_argument("--results-dir", type=Path, default=None, help="default: bench/results (--tiny: a temp dir)")
    parser.add_argument("--h200-dir", type=Path, default=RESULTS_DIR, help="where the h200_*.json files are")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results.json (--tiny: in results dir)")
    parser.add_argument("--note", default="", help="a sentence for RESULTS.md about the machine's state")
    parser.add_argument("--md", type=Path, default=None, help="default: bench/RESULTS.md (--tiny: in results dir)")
    args = parser.parse_args(argv)

    if args.results_dir is None:
        args.results_dir = Path(tempfile.mkdtemp(prefix="tritonlab-bench-tiny-")) if args.tiny else RESULTS_DIR
    default_dir = ROOT / "bench" if not args.tiny else args.results_dir
    args.out = args.out or default_dir / "results.json"
    args.md = args.md or default_dir / "RESULTS.md"
    args.results_dir.mkdir(parents=True, exist_ok=True)

    mach = machine()
    steps: dict[str, dict[str, Any]] = {}
    state = args.results_dir / "steps.json"
    if args.reuse and state.is_file():
        steps = json.loads(state.read_text())
    chosen = [s for s in STEPS if (args.only is None or s.name in args.only) and s.name not in args.skip]
    if not args.reuse:
        if state.is_file():
            steps = json.loads(state.read_text())  # steps not chosen now keep their last record
        for step in chosen:
            steps[step.name] = run_step(step, args.results_dir, args.tiny)
            state.write_text(json.dumps(steps, indent=2) + "\n")
        for step in STEPS:
            if step not in chosen and (args.tiny or step.name not in steps):
                steps[step.name] = {"status": "skipped", "exit": None, "seconds": 0, "started": None,
                                    "command": shlex.join(command_line(step, args.results_dir, args.tiny)),
                                    "log": "-"}  # fmt: skip
        state.write_text(json.dumps(steps, indent=2) + "\n")

    results = aggregate(args.results_dir, steps, mach, tiny=args.tiny, h200_dir=args.h200_dir)
    raw = {}
    for name, filename in (("prometheus", "cpu_prometheus_scrape.json"), ("server_startup", "cpu_server_startup.json"),
                           ("docker", "cpu_docker_backend.json"), ("notebooks", "cpu_notebooks.json")):  # fmt: skip
        if (args.results_dir / filename).is_file() and steps.get(name, {}).get("status", "ok") == "ok":
            raw[name] = json.loads((args.results_dir / filename).read_text())
    gpu_file = args.h200_dir / H200["gpu_embedded"]
    if gpu_file.is_file():
        raw["gpu_embedded"] = {**json.loads(gpu_file.read_text()), "_date": git_date(gpu_file) or "?"}
    command = "make bench" if not (args.tiny or args.reuse or args.only or args.skip) else shlex.join(
        ["bench/run_all.py", *(argv if argv is not None else sys.argv[1:])])  # fmt: skip
    if args.reuse and steps:
        command = f"{'make bench' if args.results_dir == RESULTS_DIR else 'bench/run_all.py'} (rewritten by "
        command += "bench/run_all.py --reuse)"
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "period": run_period(steps),
        "results_dir": os.path.relpath(args.results_dir, ROOT)
        if args.results_dir.is_relative_to(ROOT)
        else str(args.results_dir),
        "results_dir_abs": str(args.results_dir),
        "command": command,
        "note": args.note,
        "machine": mach,
        "versions": versions(),
        "steps": steps,
        "results": results,
        "raw": raw,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.md.write_text(render_markdown(report))
    measured = [k for k in KEYS if results[k] is not None]
    missing = {k: results[f"{k}_meta"]["reason"] for k in KEYS if results[k] is None}
    print(f"[bench] {len(measured)}/{len(KEYS)} figures measured -> {args.out}, {args.md}")
    for key, reason in missing.items():
        print(f"[bench]   {key}: not measured: {reason}")
    failed = [name for name, s in steps.items() if s["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
