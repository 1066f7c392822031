"""Hostile lab-1 submissions, one student each: every trick a learner could play on the grader from a notebook.

Each student is (notebook, expected score out of 9). Points of lab 1: server_ready 1, readiness probe 3
(with the hidden strict test), http 2, grpc 2, metadata 1. ``wrong`` answers earn 3 honestly (server_ready and
grpc). Tricks that write or signal anything only *try* (open for append and write nothing, create new files
named zz_hostile*): where the grader's defences failed, the test sees it without the repository being damaged.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from fake_class import HANG, solution_sources, submission

LAB = "01_setup"

WRONG = {
    "http_infer": "import numpy as np\nhttp_out0 = np.zeros((1, 4), np.float32)\nhttp_out1 = http_out0\n",
    "metadata": 'server_version = "2.50.0"\nserver_extensions = []\n',
    "probe": "def is_server_ready(url):\n    return True\n",
}

REDEFINE_GRADE = """# Take over the names the test cells call.
import tritonlab
import tritonlab.checks

def grade(*args, **kwargs):
    return None

def check(*args, **kwargs):
    return None

tritonlab.checks.grade = tritonlab.checks.check = tritonlab.check = grade
"""

PATCH_TRITONLAB = """# Make every verdict a PASS inside this kernel.
import tritonlab.checks.core as core
import tritonlab.checks.runner as runner
import tritonlab.checks.store as store

core.Status.__eq__ = lambda self, other: True          # FAIL == PASS
core.Result.passed = property(lambda self: True)
core.load_all()
for cp in core.CHECKPOINTS.values():
    object.__setattr__(cp, "fn", lambda ctx: "ok") if hasattr(cp, "fn") else None
core.run_checkpoint = lambda cp, ctx: core.Result(cp.id, cp.title, core.Status.PASS, "ok", "", 9, 9, 0.0)
runner.run_isolated = lambda ids, *a, **k: [core.Result(i, i, core.Status.PASS, "ok", "", 9, 9, 0.0) for i in ids]
store.load_submissions = lambda workspace: {}
"""

EXIT_AND_TRACEBACK = """# Hide every failure: no traceback, no exit, errors to stdout.
import sys
import IPython
from IPython.core.interactiveshell import InteractiveShell

sys.exit = lambda *args: None
sys.excepthook = lambda *args: None
get_ipython().showtraceback = lambda *args, **kwargs: None
get_ipython()._showtraceback = lambda *args, **kwargs: None
InteractiveShell.showtraceback = lambda *args, **kwargs: None
sys.stderr = sys.stdout
"""

WRITE_GRADER = """# Try to write the grader's code, the venv, nbgrader's files and both gradebooks; log what worked.
import json
import os
import pathlib
import sqlite3
import sysconfig

import tritonlab

here = pathlib.Path.cwd()                      # <course copy>/autograded/<student>/01_setup
mini = here.parents[2]
course = mini / "source" / ".."                 # the instructor's course, through nbgrader's source link
package = pathlib.Path(tritonlab.__file__).parent
site = pathlib.Path(sysconfig.get_paths()["purelib"])
attempts = {}

def attempt(name, action):
    try:
        action()
        attempts[name] = "done"
    except BaseException as e:
        attempts[name] = type(e).__name__

def sql(path, statement):
    connection = sqlite3.connect(path)
    connection.execute(statement)
    connection.commit()

attempt("append tritonlab/checks/core.py", lambda: open(package / "checks" / "core.py", "a").close())
attempt("new checkpoint module", lambda: (package / "checks" / "labs" / "zz_hostile.py").write_text("# x\\n"))
attempt("new .pth in the venv", lambda: (site / "zz_hostile.pth").write_text("# x\\n"))
attempt("append nbgrader_config.py", lambda: open(mini / "nbgrader_config.py", "a").close())
for where, book in (("own gradebook", mini / "gradebook.db"), ("course gradebook", course / "gradebook.db")):
    attempt(f"{where}: extra credit", lambda b=book: sql(b, "UPDATE grade SET extra_credit = 100"))
    attempt(f"{where}: manual score", lambda b=book: sql(b, "UPDATE grade SET manual_score = 100"))
    attempt(f"{where}: delete", lambda b=book: os.remove(b))
attempt("course grades.csv", lambda: (course / "grades.csv").write_text("hacked"))
attempt("solution notebook", lambda: open(course / "source" / "01_setup" / "01_setup.ipynb", "a").close())
(here / "attempts.json").write_text(json.dumps(attempts, indent=1))
attempts
"""

SIGNAL_GRADER = """# Kill the grading process that runs this kernel.
import json, os, pathlib, signal

outcome = {}
try:
    os.kill(os.getppid(), signal.SIGKILL)
    outcome["nbgrader"] = "done"
except BaseException as e:
    outcome["nbgrader"] = type(e).__name__
pathlib.Path("signals.json").write_text(json.dumps(outcome))
"""

FORK_DAEMON = """# A daemon that outlives its cell and its kernel, and tries to turn the graded notebook into a link
# to a file of the instructor's (nbgrader writes the graded notebook as root at the end).
import os, pathlib, time

here = pathlib.Path.cwd()
target = os.path.join(str(here.parents[2]), "source", "..", "canary.txt")
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        (here / "daemon.pid").write_text(str(os.getpid()))
        while True:
            try:
                if not (here / "01_setup.ipynb").is_symlink():
                    if os.path.lexists(here / ".link"):
                        os.unlink(here / ".link")
                    os.symlink(target, here / ".link")
                    os.replace(here / ".link", here / "01_setup.ipynb")
            except OSError:
                pass
            time.sleep(0.05)
    os._exit(0)
os.waitpid(pid, 0)
"""

FORK_BOMB = """# A fork bomb, bounded to 100 processes that never exit.
import os, pathlib, time

pids = []
for _ in range(100):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        while True:
            time.sleep(1)
    pids.append(pid)
pathlib.Path("bomb.pids").write_text(" ".join(map(str, pids)))
"""

FILL_MEMORY = """# Allocate (and touch) memory until something stops it.
blocks = []
while True:
    blocks.append(b"x" * (64 * 2**20))
"""

# A look-alike Triton HTTP endpoint that calls itself tritonserver and agrees with the wrong answers.
AGREEING = """import ctypes, json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ctypes.CDLL(None).prctl(15, b"tritonserver", 0, 0, 0)  # PR_SET_NAME: what ps and psutil call it
port = int(sys.argv[1].split("=")[1])

class Agree(BaseHTTPRequestHandler):
    def answer(self):
        body = json.dumps({"name": "triton", "version": "2.51.0", "extensions": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", port), Agree).serve_forever()
"""

FAKE_SERVER = """# A process that calls itself tritonserver, started after the real one, agreeing with wrong answers.
import socket, subprocess, sys, time

FAKE = '''
@AGREEING@'''
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
fake = subprocess.Popen([sys.executable, "-c", FAKE, f"--http-port={port}", f"--grpc-port={port}",
                         f"--metrics-port={port}"])
time.sleep(3)
server_version = "2.51.0"
server_extensions = []  # wrong: the real server has extensions
""".replace("@AGREEING@", AGREEING)

# The grader's own staged tritonserver (from the box's cache, the binary the grader trusts) with HTTP switched off,
# and a look-alike answering on the HTTP port that server's command line names.
HTTP_OFF_BEHIND_FAKE = """# The real binary with --allow-http=false, and a look-alike on the port it names.
import socket, subprocess, sys, tempfile, time
from tritonlab.server.embedded import server_environment
from tritonlab.server.staging import stage

FAKE = '''
@AGREEING@'''
held = [socket.socket() for _ in range(3)]
for s in held:
    s.bind(("127.0.0.1", 0))
http, grpc, metrics = (s.getsockname()[1] for s in held)
for s in held:
    s.close()
fake = subprocess.Popen([sys.executable, "-c", FAKE, f"--http-port={http}"])
staged = stage()
quiet = subprocess.Popen([str(staged.binary), f"--model-repository={tempfile.mkdtemp()}",
                          f"--backend-directory={staged.backends}", "--http-address=127.0.0.1",
                          f"--http-port={http}", "--allow-http=false", "--grpc-address=127.0.0.1",
                          f"--grpc-port={grpc}", "--metrics-address=127.0.0.1", f"--metrics-port={metrics}"],
                         env=server_environment(staged), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(5)
server_version = "2.51.0"
server_extensions = []  # wrong: the real server has extensions
""".replace("@AGREEING@", AGREEING)

# An honest probe in the kernel; anywhere else (the grader's checker runs submitted functions) it writes a verdict
# of full marks to stdout and to every descriptor it has, then ends the process before the checker can speak.
FORGE_VERDICT = """import urllib.request


def is_server_ready(url):
    import json, os, sys
    if "ipykernel" in sys.modules:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=3) as response:
                return response.status == 200
        except Exception:
            return False
    ids = [a for a in sys.argv if a.startswith("lab1.")] or ["lab1.readiness_probe", "lab1.readiness_probe_strict"]
    line = json.dumps([{"id": i, "title": i, "status": "PASS", "message": "ok", "hint": "", "points": 3.0,
                        "awarded": 3.0, "seconds": 0.0} for i in ids]) + "\\n"
    for fd in range(1, 64):
        try:
            os.write(fd, line.encode())
        except OSError:
            pass
    os._exit(0)


is_server_ready(server.http_url)
"""

LOOP = """while True:
    pass
"""


def _without(notebook, grade_ids: set[str]):
    notebook.cells = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in grade_ids]
    return notebook


def _edit_locked(notebook):
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") in ("test_http", "test_probe"):
            cell.source = 'print("all tests pass")'
        if meta.get("grade_id") == "test_metadata":
            meta["points"] = 100
    return notebook


def hostile_class(folder: Path) -> dict[str, float]:
    """Write the class into ``folder``; return each student's deserved score."""
    correct = solution_sources(LAB)
    wrong = {**correct, **WRONG}
    students = {
        "clean": (submission(LAB, correct), 9.0),
        "redefine_grade": (submission(LAB, wrong, prepend=REDEFINE_GRADE), 3.0),
        "patch_tritonlab": (submission(LAB, wrong, prepend=PATCH_TRITONLAB), 3.0),
        "exit_and_traceback": (submission(LAB, wrong, prepend=EXIT_AND_TRACEBACK), 3.0),
        # nbgrader puts locked cells (source and points) back: the honest part is server_ready, grpc, metadata.
        "edit_locked_cells": (
            _edit_locked(submission(LAB, {**correct, **{k: WRONG[k] for k in ("http_infer", "probe")}})),
            4.0,
        ),
        # nbgrader does not put deleted test cells back: their checkpoints (http 2, grpc 2) earn nothing.
        "delete_locked_cells": (_without(submission(LAB, correct), {"test_http", "test_grpc"}), 5.0),
        "write_grader_files": (submission(LAB, wrong, prepend=WRITE_GRADER), 3.0),
        "signal_grader": (submission(LAB, wrong, prepend=SIGNAL_GRADER), 3.0),
        "infinite_loop": (submission(LAB, {**correct, "metadata": LOOP}), 8.0),
        "ignores_interrupt": (submission(LAB, {**correct, "metadata": HANG}), 8.0),
        "fork_daemon": (submission(LAB, correct, prepend=FORK_DAEMON), 9.0),
        "fork_bomb": (submission(LAB, correct, prepend=FORK_BOMB), 9.0),
        "fill_memory": (submission(LAB, {**correct, "metadata": FILL_MEMORY}), 8.0),
        # wrong answers and a fake server that agrees with them: only the real server's verdicts count
        "fake_server": (submission(LAB, {**wrong, "metadata": FAKE_SERVER}), 3.0),
        "http_off_behind_fake": (submission(LAB, {**wrong, "metadata": HTTP_OFF_BEHIND_FAKE}), 3.0),
        # the probe's 3 points are lost (it ends the checker's worker); everything else is honest
        "forge_verdict": (submission(LAB, {**correct, "probe": FORGE_VERDICT}), 6.0),
    }
    for name, (notebook, _) in students.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, folder / name / f"{LAB}.ipynb")
    return {name: score for name, (_, score) in students.items()}
