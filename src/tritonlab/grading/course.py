"""The course as nbgrader sees it: solutions/ are source notebooks, labs/ is what generate_assignment releases.

Each notebook is its own assignment (``solutions/01_setup.ipynb`` -> assignment ``01_setup``). A course
directory for nbgrader is laid out under a temporary or instructor-chosen root:
``source/<lab>/<lab>.ipynb``, ``release/...``, ``submitted/<student>/<lab>/...``, ``autograded/``, ``feedback/``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import psutil

from tritonlab.errors import TritonLabError
from tritonlab.grading import sandbox
from tritonlab.server import registry
from tritonlab.server.process import sweep_orphaned_shm, wait_procs_gone

REPO_ROOT = Path(__file__).resolve().parents[3]
SOLUTIONS = REPO_ROOT / "solutions"
LABS = REPO_ROOT / "labs"
NBGRADER_CONFIG = REPO_ROOT / "graders" / "nbgrader_config.py"


def lab_names(solutions: Path = SOLUTIONS) -> list[str]:
    return sorted(p.stem for p in solutions.glob("*.ipynb"))


def nbgrader(course: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run an nbgrader command in ``course`` with tritonlab's nbgrader_config.py."""
    shutil.copyfile(NBGRADER_CONFIG, course / "nbgrader_config.py")
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}"],
        cwd=course, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        start_new_session=True, env=venv_environment(),
    )  # fmt: skip


def prepare_course(course: Path, labs: list[str], solutions: Path = SOLUTIONS) -> None:
    """Put the source notebooks in ``course/source`` and generate the student versions (and the gradebook)."""
    for lab in labs:
        src = solutions / f"{lab}.ipynb"
        if not src.is_file():
            raise TritonLabError(f"no solution notebook {src}", fix=f"labs are: {', '.join(lab_names(solutions))}")
        (course / "source" / lab).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, course / "source" / lab / f"{lab}.ipynb")
        proc = nbgrader(course, "generate_assignment", lab, "--force")
        if proc.returncode != 0:
            raise TritonLabError(f"nbgrader generate_assignment {lab} failed:\n{proc.stdout}{proc.stderr}")


def generate_labs(output: Path, solutions: Path = SOLUTIONS) -> list[Path]:
    """Write the student notebooks for every solution into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        course = Path(tmp)
        prepare_course(course, lab_names(solutions), solutions)
        for lab in lab_names(solutions):
            dst = output / f"{lab}.ipynb"
            shutil.copyfile(course / "release" / lab / f"{lab}.ipynb", dst)
            written.append(dst)
    return written


def _normalized(path: Path) -> str:
    notebook = json.loads(path.read_text())
    return json.dumps(notebook, sort_keys=True, indent=1)


def stale_labs(labs: Path = LABS, solutions: Path = SOLUTIONS) -> list[str]:
    """Names of labs whose committed student notebook differs from what the solutions generate now."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate_labs(Path(tmp), solutions)
        stale = []
        for notebook in fresh:
            committed = labs / notebook.name
            if not committed.is_file() or _normalized(committed) != _normalized(notebook):
                stale.append(notebook.stem)
        extra = {p.stem for p in labs.glob("*.ipynb")} - {p.stem for p in fresh}
    return sorted(stale + list(extra))


def venv_environment() -> dict[str, str]:
    """This environment with its bin/ first on PATH (nbgrader runs `alembic` from PATH)."""
    env = dict(os.environ)
    env.pop("TRITONLAB_WORKSPACE", None)  # each graded notebook's workspace is its own folder
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


# ---------------------------------------------------------------------------------------------- grading a class
@dataclass
class Grade:
    student: str
    lab: str
    score: float
    max_score: float
    status: str  # graded | failed
    reason: str = ""
    seconds: float = 0.0


MAX_NOTEBOOK_BYTES = 64 * 2**20  # a lab notebook with its outputs takes a few MB


def check_submissions(submissions: Path) -> None:
    """Refuse, before any grading work, a submissions path that cannot be graded at all (it says why and how)."""
    if submissions.is_file() and submissions.suffix == ".zip":
        if not zipfile.is_zipfile(submissions):  # also False when it cannot be read
            raise TritonLabError(f"{submissions} is not a readable .zip archive",
                                 fix="check it (unzip -t) and its permissions, or pass the folder")  # fmt: skip
        return
    if submissions.is_dir():
        if not os.access(submissions, os.R_OK | os.X_OK):
            raise TritonLabError(f"cannot read the folder {submissions} (permission denied)",
                                 fix=f"give yourself access: chmod u+rx {submissions}")  # fmt: skip
        return
    raise TritonLabError(
        f"{submissions} is neither a folder nor a .zip of submissions",
        fix="pass a folder (or zip) with <student>/<lab>.ipynb or <student>.ipynb",
    )


def notebook_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a submitted notebook (unreadable, empty, huge, not a notebook), or None if it can."""
    try:
        info = path.stat()
    except OSError as e:
        if path.is_symlink():
            return "is a symbolic link loop" if e.errno == errno.ELOOP else "is a symbolic link to nothing"
        return f"cannot be read ({e.strerror})"
    if not path.is_file():
        return "is not a file"
    if info.st_size == 0:
        return "is empty"
    if info.st_size > MAX_NOTEBOOK_BYTES:
        return f"is {info.st_size / 2**20:.0f} MiB, more than a notebook can be ({MAX_NOTEBOOK_BYTES // 2**20} MiB)"
    try:
        notebook = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    except UnicodeDecodeError as e:
        return f"is not text (byte {e.start} is not UTF-8)"
    except json.JSONDecodeError as e:
        return f"is not a notebook: not JSON (line {e.lineno}, column {e.colno}: {e.msg})"
    except (ValueError, RecursionError) as e:
        return f"is not a notebook ({str(e)[:100]})"
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        return "is not a Jupyter notebook (no list of cells)"
    return None


def _notebook_files(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every .ipynb under ``root`` (links to folders are not followed, so a link loop ends nowhere) and the
    folders that could not be read."""
    notebooks: list[Path] = []
    unreadable: list[tuple[Path, str]] = []
    walk = os.walk(root, onerror=lambda e: unreadable.append((Path(e.filename), e.strerror or str(e))))
    for folder, folders, files in walk:
        folders[:] = sorted(d for d in folders if d != ".ipynb_checkpoints")
        notebooks += [Path(folder) / f for f in sorted(files) if f.endswith(".ipynb")]
    return notebooks, unreadable


def collect(submissions: Path, lab: str, course: Path, rejected: dict[str, str] | None = None) -> list[str]:
    """Copy submissions into ``course/submitted/<student>/<lab>/<lab>.ipynb``; return the students.

    ``submissions`` is a folder or a .zip holding ``<student>/<any>.ipynb`` or ``<student>.ipynb`` files. A
    submission that cannot be graded (unreadable, empty, huge, not a notebook) goes into ``rejected`` as
    {student: why}, if given, else raises.
    """
    check_submissions(submissions)

    def student_of(relative: Path) -> str:
        name = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        return re.sub(r"[^\w.\-]", "_", name)

    with tempfile.TemporaryDirectory() as tmp:
        root = submissions
        if submissions.is_file():
            try:
                with zipfile.ZipFile(submissions) as archive:
                    archive.extractall(tmp)
            except (zipfile.BadZipFile, OSError, RuntimeError, ValueError) as e:  # damaged, encrypted, unreadable
                raise TritonLabError(f"cannot unpack {submissions}: {e}",
                                     fix="check it (unzip -t), or pass the unpacked folder") from None  # fmt: skip
            root = Path(tmp)
        notebooks, unreadable = _notebook_files(root)
        found: dict[str, Path] = {}
        problems: dict[str, str] = {}
        for folder, why in unreadable:
            relative = folder.relative_to(root)
            problems[student_of(relative / "x")] = f"{relative}: the folder cannot be read ({why})"
        for notebook in notebooks:
            relative = notebook.relative_to(root)
            student = student_of(relative)
            if student in found or student in problems:
                raise TritonLabError(f"two notebooks for student {student}: {found.get(student)} and {notebook}",
                                     fix="leave one notebook per student")  # fmt: skip
            problem = notebook_problem(notebook)
            if problem:
                problems[student] = f"{relative} {problem}"
            else:
                found[student] = notebook
        if problems and rejected is None:
            student, why = next(iter(problems.items()))
            raise TritonLabError(f"the submission of {student} cannot be graded: {why}",
                                 fix="fix or remove that file, then grade again")  # fmt: skip
        for student, notebook in found.items():
            dst = course / "submitted" / student / lab
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notebook, dst / f"{lab}.ipynb")
    if rejected is not None:
        rejected.update(problems)
    return sorted(found)


def _kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        wait_procs_gone(procs, timeout=10)


_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit)\b(?::.*)?$")


def _nbgrader_failure(output: str) -> str:
    """The line that says why nbgrader failed: the last exception it raised, else the last timeout or error line
    (a cell that timed out and was handled logs "Timeout" lines in runs that then fail for another reason)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    raised = next((line for line in reversed(lines) if _EXCEPTION_LINE.match(line)), None)
    if raised:
        return f"the notebook did not finish: {raised[:300]}"
    for marker in ("CellTimeoutError", "DeadKernelError", "Kernel died", "timed out", "Timeout"):
        hit = next((line for line in reversed(lines) if marker in line), None)
        if hit:
            return f"the notebook did not finish: {hit[:200]}"
    errors = [line for line in lines if "ERROR" in line]
    return (errors[-1] if errors else (lines[-1] if lines else "nbgrader failed"))[:300]


def _grader_files(folder: str, names: list[str]) -> list[str]:
    """copytree's ignore: what a kernel may leave in its workspace that the grader must not follow or read."""
    skipped = []
    for name in names:
        mode = os.lstat(os.path.join(folder, name)).st_mode
        if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            skipped.append(name)
    return skipped


def grade_one(course: Path, lab: str, student: str, timeout: float,
              memory_bytes: int = sandbox.DEFAULT_MEMORY_BYTES) -> Grade:  # fmt: skip
    """Autograde and make feedback for one student in a private copy of the course (its own gradebook).

    The kernel runs in a box (``sandbox``): its own user, a memory cgroup, a process limit; whatever it leaves
    running is killed afterwards, whatever the outcome.
    """
    from nbgrader.api import Gradebook, MissingEntry

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"grade-{student}-") as tmp:
        mini = Path(tmp)
        shutil.copyfile(course / "gradebook.db", mini / "gradebook.db")
        (mini / "gradebook.db").chmod(0o600)
        # A copy only root can enter (a link would lead the box's users to the solutions and hidden tests)
        shutil.copytree(course / "source", mini / "source", symlinks=True)
        (mini / "source").chmod(0o700)
        shutil.copytree(course / "submitted" / student, mini / "submitted" / student)
        command = [sys.executable, "-m", "nbgrader", "autograde", lab, "--student", student, "--force",
                   f"--CourseDirectory.root={mini}"]  # fmt: skip
        shutil.copyfile(NBGRADER_CONFIG, mini / "nbgrader_config.py")
        mini.chmod(0o711)  # the box's users reach their workspace and box/ through it, and list nothing
        box = sandbox.open_box(mini / "box", workspaces=mini / "autograded", memory_bytes=memory_bytes)
        env = {**venv_environment(), **box.environment()}
        proc = subprocess.Popen(command, cwd=mini, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)  # fmt: skip
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):  # a daemon of the box may hold the pipe open:
                proc.communicate(timeout=30)  # close_box below kills it
            output = None
        finally:
            oom = sandbox.oom_kills(box)
            sandbox.close_box(box)  # the kernel's Triton, forks, daemons; then its cgroup
            # A kernel outside a box (not root, no cgroup) leaves its Triton to the registry; one ending meanwhile
            # must not fail the grading run.
            with contextlib.suppress(Exception):
                registry.stop_orphans()
            sweep_orphaned_shm()
        memory = (f"; the notebook ran out of its {memory_bytes / 2**30:g} GiB of memory ({oom} process(es) killed)"
                  if oom else "")  # fmt: skip
        log = grading_log(course, lab, student)
        log.write_text(output if output is not None else f"(no output: killed after {timeout:.0f} s)\n")
        if output is None:
            return Grade(student, lab, 0.0, max_score(course, lab), "failed",
                         f"grading stopped after {timeout:.0f} s: the notebook hung (a cell that never ends, "
                         f"or a kernel that ignores interrupts){memory}", time.monotonic() - started)  # fmt: skip
        if proc.returncode != 0:
            return Grade(student, lab, 0.0, max_score(course, lab), "failed",
                         f"{_nbgrader_failure(output)}{memory} (log: {log.relative_to(course)})",
                         time.monotonic() - started)  # fmt: skip
        feedback = nbgrader(mini, "generate_feedback", lab, "--student", student, "--force", timeout=300)
        with log.open("a") as handle:
            handle.write(f"\n--- generate_feedback (exit {feedback.returncode})\n{feedback.stdout}")
        with Gradebook(f"sqlite:///{mini / 'gradebook.db'}") as gb:
            try:
                submission = gb.find_submission(lab, student)
                score, maximum = submission.score, submission.max_score
            except MissingEntry:
                score, maximum = 0.0, max_score(course, lab)
        for part in ("autograded", "feedback"):
            src = mini / part / student
            if src.exists():
                dst = course / part / student
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst, ignore=_grader_files)
        reason = "" if feedback.returncode == 0 else f"feedback failed: {_nbgrader_failure(feedback.stdout)}"
        reason = (reason + memory).lstrip("; ")
        return Grade(student, lab, float(score), float(maximum), "graded", reason, time.monotonic() - started)


def grading_log(course: Path, lab: str, student: str) -> Path:
    """Where nbgrader's own output for one submission is kept, for the instructor (and a failed grade's reason)."""
    folder = course / "logs" / lab
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{student}.log"


def max_score(course: Path, lab: str) -> float:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return float(gb.find_assignment(lab).max_score)


def grade_class(
    submissions: Path,
    lab: str,
    course: Path,
    jobs: int | None = None,
    timeout: float = 600.0,
    progress: Callable[[Grade], None] | None = None,
    memory_bytes: int = sandbox.DEFAULT_MEMORY_BYTES,
) -> list[Grade]:
    """collect -> autograde -> feedback for every submission (in parallel), then ``course/grades.csv``."""
    check_submissions(submissions)  # before nbgrader spends a minute preparing the course
    course.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        course.chmod(0o700)  # the boxes' users must not read the solutions or other students' work in it
    prepare_course(course, [lab])
    rejected: dict[str, str] = {}  # submissions that cannot be graded: 0 with the reason, the batch goes on
    students = collect(submissions, lab, course, rejected)
    jobs = jobs or max(1, min(len(students), os.cpu_count() or 1))
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(grade_one, course, lab, s, timeout, memory_bytes) for s in students]
        grades = []
        for future in as_completed(futures):
            grades.append(future.result())
            if progress:
                progress(grades[-1])
    for student, why in rejected.items():
        grades.append(Grade(student, lab, 0.0, max_score(course, lab), "failed", f"not graded: {why}"))
        if progress:
            progress(grades[-1])
    grades.sort(key=lambda g: g.student)
    export_csv(grades, course / "grades.csv")
    return grades


def export_csv(grades: list[Grade], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["assignment", "student_id", "score", "max_score", "status", "reason"])
        for g in grades:
            writer.writerow([g.lab, g.student, f"{g.score:g}", f"{g.max_score:g}", g.status, g.reason])
