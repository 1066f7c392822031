"""Time to green, the setup part: `env/setup.sh` cold on a fresh venv, then re-run on the set-up checkout.

    .venv/bin/python bench/setup_time.py [--reruns 5] [--no-cold] [--out bench/results/cpu_setup.json]

Cold: a clean checkout of HEAD (`git archive`) in a temp dir, no .venv, an empty tritonlab cache (the embedded
server is staged again), the base interpreter of this venv as PYTHON, an empty uv cache. The install (uv; pip with
--pip-only) uses this machine's local wheel mirror as a learner's pip would; a machine that downloads from PyPI
pays the downloads on top.
Each `[setup]` line is timestamped, so the report splits the cold run into its phases. Re-run: setup.sh again in
that checkout (nothing changed: it only checks and exits). --no-cold times re-runs of this checkout instead.
Target on a 2-core machine: cold setup <= 3 min.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_COLD_S = 180.0


def clean_checkout(dest: Path) -> Path:
    """HEAD's tracked files in ``dest`` (what `git clone` gives a learner), without .venv or caches."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def base_python() -> str:
    """The interpreter this venv was made from (a learner's python3), not the venv's own."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def run_setup(repo: Path, env: dict[str, str]) -> tuple[float, list[tuple[float, str]]]:
    """Seconds for `bash env/setup.sh` in ``repo``, and each `[setup]` line with its time since the start."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["bash", "env/setup.sh"], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)  # fmt: skip
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((round(time.perf_counter() - t0, 2), line.rstrip()))
    rc = proc.wait()
    seconds = time.perf_counter() - t0
    if rc != 0:
        tail = "\n".join(text for _, text in lines[-30:])
        raise SystemExit(f"env/setup.sh failed in {repo} (exit {rc}):\n{tail}")
    return seconds, lines


def phases(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds from each `[setup]` line to the next (the last one to the end)."""
    marks = [(t, text.split("[setup]", 1)[1].strip()) for t, text in lines if "[setup]" in text]
    out = {}
    for (t, what), (t_next, _) in zip(marks, [*marks[1:], (total, "")], strict=True):
        out[what.replace("\x1b[0m", "").strip()[:80]] = round(t_next - t, 2)
    return out


def summary(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 2), "min_s": round(min(values), 2),
            "max_s": round(max(values), 2), "n": len(values)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=5)
    parser.add_argument("--no-cold", action="store_true", help="time re-runs of this checkout only")
    parser.add_argument("--pip-only", action="store_true", help="install with pip, not uv (TRITONLAB_NO_UV=1)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cpu_setup.json")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "TRITONLAB_"))}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    results: dict[str, object] = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "target_cold_s": TARGET_COLD_S,
    }
    with tempfile.TemporaryDirectory(prefix="tritonlab-setup-bench-") as tmp:
        if args.no_cold:
            repo = ROOT
            if os.environ.get("TRITONLAB_CACHE_DIR"):
                env["TRITONLAB_CACHE_DIR"] = os.environ["TRITONLAB_CACHE_DIR"]
        else:
            repo = clean_checkout(Path(tmp) / "tritonlab")
            env["TRITONLAB_CACHE_DIR"] = str(Path(tmp) / "cache")  # the server is staged again
            env["PYTHON"] = base_python()
            env["UV_CACHE_DIR"] = str(Path(tmp) / "uv-cache")  # cold: nothing downloaded or unpacked before
            if args.pip_only:
                env["TRITONLAB_NO_UV"] = "1"
            results["python"] = env["PYTHON"]
            results["installer"] = "pip (TRITONLAB_NO_UV=1)" if args.pip_only else "uv (env/setup.sh's default)"
            results["pip_cache"] = ("uv cache empty; pip's (warm) fetches uv only; local wheel mirror as configured "
                                    "for pip")  # fmt: skip
            cold, lines = run_setup(repo, env)
            results["cold"] = {**summary([cold]), "phases_s": phases(lines, cold)}
            print(
                f"cold env/setup.sh: {cold:.1f} s "
                f"[{'meets' if cold <= TARGET_COLD_S else 'MISSES'} target <= {TARGET_COLD_S:.0f} s]",
                flush=True,
            )
            for phase, seconds in results["cold"]["phases_s"].items():  # type: ignore[index]
                print(f"  {seconds:7.1f} s  {phase}", flush=True)
            check = subprocess.run([str(repo / ".venv" / "bin" / "python"), "-c", "import tritonlab"], env=env)
            results["cold"]["green"] = check.returncode == 0  # type: ignore[index]
        runs = [run_setup(repo, env) for _ in range(args.reruns)]
    reruns = [seconds for seconds, _ in runs]
    said = sorted(
        {text.split("[setup]", 1)[1].replace("\x1b[0m", "").strip() for _, lines in runs for _, text in lines
         if "[setup]" in text}
    )  # fmt: skip
    results["rerun"] = {**summary(reruns), "runs_s": [round(r, 2) for r in reruns],
                        "checkout": "fresh copy" if not args.no_cold else "this checkout",
                        "setup_said": said}  # fmt: skip
    print(f"re-run env/setup.sh: median {results['rerun']['median_s']:.2f} s over {len(reruns)}")  # type: ignore[index]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
