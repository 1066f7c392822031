"""The box a submission's kernel runs in while it is graded: its own user, memory and process limits.

A notebook under grading runs arbitrary learner code. The grader (nbgrader, the gradebook, the out-of-kernel
checker, tritonlab's own source and the venv) must survive it, and so must the machine and the other students:

- **its own user** (when the grader runs as root): a fresh uid/gid that owns only the submission's folder, a home
  and a tritonlab cache. It cannot write the grader's files, the venv (a ``.pth`` file would run in the checker),
  the gradebook or other submissions, nor signal or trace the grader, the checker or other kernels; and
  everything it leaves running (forks, daemons, its Triton) is found by that uid and killed afterwards.
- **memory**: a memory cgroup (v1 or v2, where the grader may create one) caps the whole tree, so an allocation
  loop or a forking one is killed by the OOM killer inside the box; without a cgroup, RLIMIT_AS caps each process.
- **processes**: RLIMIT_NPROC (counted per uid, so it binds only with the box's own uid) bounds fork bombs;
  no core dumps.

The kernel command is wrapped: ``python -m tritonlab.grading.sandbox -- <kernel command>`` reads its settings
from ``TRITONLAB_SANDBOX`` (JSON), applies them as root, drops to the box's uid and execs the kernel.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import secrets
import signal
import stat
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from tritonlab.server.process import wait_procs_gone

ENV = "TRITONLAB_SANDBOX"
# per submission (its kernel, its Triton and all they start); TRITONLAB_GRADE_MEMORY_GIB overrides it
DEFAULT_MEMORY_BYTES = int(float(os.environ.get("TRITONLAB_GRADE_MEMORY_GIB", "6")) * 2**30)
FSIZE_BYTES = 2 * 2**30  # no single file larger than this
DEFAULT_NPROC = 2048  # tasks (threads count): Triton, its python stubs, torch and the kernel use a few hundred


@dataclass
class Box:
    root: Path  # private folder: home/ and cache/ of the kernel
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    nproc: int = DEFAULT_NPROC
    uid: int | None = None  # None: the grader is not root and the kernel runs as the grader's user
    checker_uid: int | None = None  # the out-of-kernel checker's own user (gid: the kernel's), never the kernel's
    cgroup: Path | None = None
    workspaces: Path | None = None  # the kernel's working folder must lie under it; it is given to the box user

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def environment(self) -> dict[str, str]:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        return {ENV: json.dumps(data)}

    @classmethod
    def from_environment(cls) -> Box:
        data = json.loads(os.environ[ENV])
        paths = {k: Path(data[k]) if data.get(k) else None for k in ("cgroup", "workspaces")}
        return cls(root=Path(data["root"]), memory_bytes=int(data["memory_bytes"]), nproc=int(data["nproc"]),
                   uid=data["uid"], checker_uid=data["checker_uid"], **paths)  # fmt: skip

    @classmethod
    def current(cls) -> Box | None:
        """The box this grading process puts its kernels in (None when not grading in a box)."""
        return cls.from_environment() if os.environ.get(ENV) else None


# ---------------------------------------------------------------------------------------------- grader side
def _unused_uid() -> int:
    """A uid (and uid + 1) no process uses and no account has: nothing it could own or reach exists yet."""
    import grp
    import pwd

    used = {p.info["uids"].real for p in psutil.process_iter(["uids"]) if p.info["uids"]}
    while True:
        uid = 200_000 + 2 * secrets.randbelow(500_000_000)
        if uid in used or uid + 1 in used:
            continue
        try:
            pwd.getpwuid(uid), pwd.getpwuid(uid + 1), grp.getgrgid(uid)
        except KeyError:
            return uid


def _memory_cgroup_parent() -> Path | None:
    """Where this process may create a memory cgroup: its own memory cgroup (v1) or its v2 cgroup."""
    with contextlib.suppress(OSError):
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
                if (base / "memory.limit_in_bytes").exists():
                    return base
        unified = Path("/sys/fs/cgroup")
        for line in lines:
            if line.startswith("0::") and (unified / "cgroup.controllers").exists():
                base = unified / line[3:].lstrip("/")
                if "memory" in (base / "cgroup.subtree_control").read_text().split():
                    return base
    return None


def _make_cgroup(name: str, memory_bytes: int) -> Path | None:
    parent = _memory_cgroup_parent()
    if parent is None or not os.access(parent, os.W_OK):
        return None
    group = parent / name
    try:
        group.mkdir()
        if (group / "memory.limit_in_bytes").exists():  # v1
            (group / "memory.limit_in_bytes").write_text(str(memory_bytes))
        else:
            (group / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0")
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        return None
    return group


def open_box(root: Path, workspaces: Path, memory_bytes: int = DEFAULT_MEMORY_BYTES,
             nproc: int = DEFAULT_NPROC) -> Box:  # fmt: skip
    """Prepare a box in ``root`` (a new folder) for one submission whose kernel will work under ``workspaces``."""
    as_root = os.geteuid() == 0
    uid = _unused_uid() if as_root else None
    box = Box(root=root, memory_bytes=memory_bytes, nproc=nproc, uid=uid, checker_uid=uid + 1 if uid else None,
              workspaces=workspaces)  # fmt: skip
    box.home.mkdir(parents=True)
    box.cache.mkdir(parents=True)  # root's: the staged server in it must stay the grader's
    box.cgroup = _make_cgroup(f"tritonlab-grade-{os.getpid()}-{secrets.token_hex(4)}", memory_bytes)
    if box.uid is not None:
        os.chown(box.home, box.uid, box.uid)
        box.home.chmod(0o700)
        for sub in ("servers", "logs", "engines", "prometheus"):  # what tritonlab writes in its cache
            (box.cache / sub).mkdir()
            os.chown(box.cache / sub, box.uid, box.uid)
        root.chmod(0o711)  # the way in to home/ and cache/: traversable, not listable
        box.cache.chmod(0o755)
    return box


def lock_down(box: Box, folder: Path) -> list[str]:
    """After the kernel: every box process is gone (``close_box``); give ``folder`` back to the grader and remove
    what the box could use to redirect the grader's writes and copies (symlinks, fifos, devices). Returns them."""
    removed = []
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                path.unlink()
                removed.append(str(path.relative_to(folder)))
            elif box.uid is not None:
                os.lchown(path, 0, 0)
    if box.uid is not None and folder.is_dir() and not folder.is_symlink():
        os.lchown(folder, 0, 0)
    return removed


def _processes_of(uids: set[int]) -> list[psutil.Process]:
    """Live processes whose real or effective uid is in ``uids``."""
    procs = []
    for proc in psutil.process_iter(["uids", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue  # already dead: waiting on it would spend the whole timeout where no one reaps it
            if proc.info["uids"] and uids & {proc.info["uids"].real, proc.info["uids"].effective}:
                procs.append(proc)
    return procs


def box_processes(box: Box) -> list[psutil.Process]:
    # the checker's user too: learner functions run in its workers, and what they start must not outlive it
    procs = _processes_of({u for u in (box.uid, box.checker_uid) if u is not None})
    if box.cgroup is not None:
        # cgroup.procs: process ids only (v1's "tasks" lists thread ids, which psutil cannot wait on)
        with contextlib.suppress(OSError, ValueError):
            for pid in {int(x) for x in (box.cgroup / "cgroup.procs").read_text().split()}:
                with contextlib.suppress(psutil.Error):
                    procs.append(psutil.Process(pid))
    return list({p.pid: p for p in procs}.values())


def clear_checker(box: Box) -> int:
    """Kill whatever runs as the checker's uid; how many. Between judgements nothing should: a daemon a submitted
    function started in an earlier check could otherwise watch the next checker before it makes itself undumpable."""
    if box.checker_uid is None:
        return 0
    procs = _processes_of({box.checker_uid})
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    wait_procs_gone(procs, timeout=2)
    return len(procs)


def close_box(box: Box, timeout: float = 20.0, remove_cgroup: bool = True) -> int:
    """Kill everything the box left running (forks included), remove its cgroup and shm; how many were killed."""
    killed = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = box_processes(box)
        if not procs:
            break
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)  # SIGKILL: a fork bomb gets no time to fork again
                killed += 1
        wait_procs_gone(procs, timeout=1)
    if box.uid is not None:
        for region in Path("/dev/shm").glob("*"):
            with contextlib.suppress(OSError):
                if region.lstat().st_uid == box.uid:
                    region.unlink()
    if box.cgroup is not None and remove_cgroup:
        for _ in range(50):
            try:
                box.cgroup.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
    return killed


def oom_kills(box: Box) -> int:
    """How many times the box's memory limit killed a process (0 without a cgroup)."""
    if box.cgroup is None:
        return 0
    with contextlib.suppress(OSError, ValueError):
        if (box.cgroup / "memory.oom_control").exists():  # v1
            fields = dict(line.split() for line in (box.cgroup / "memory.oom_control").read_text().splitlines())
            return int(fields.get("oom_kill", 0))
        fields = dict(line.split() for line in (box.cgroup / "memory.events").read_text().splitlines())
        return int(fields.get("oom_kill", 0))
    return 0


def wrap(command: list[str], role: str = "kernel") -> list[str]:
    """``command`` run inside the box this environment's TRITONLAB_SANDBOX describes, as its kernel or checker."""
    return [sys.executable, "-m", "tritonlab.grading.sandbox", role, "--", *command]


# ---------------------------------------------------------------------------------------------- kernel side
def _connection_file_for(box: Box, command: list[str]) -> list[str]:
    """Jupyter writes the kernel's connection file readable by the grader only: give the box user its own copy."""
    out = list(command)
    for i, arg in enumerate(out):
        if arg == "-f" and i + 1 < len(out):
            src = Path(out[i + 1])
            dst = box.home / src.name
            # Root writes into the box user's home, which that user controls (and a restarted kernel knows the
            # name): never follow a link planted there, create the file afresh and set its owner through the fd.
            with contextlib.suppress(FileNotFoundError):
                dst.unlink()
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, src.read_bytes())
                os.fchown(fd, box.uid, box.uid)  # type: ignore[arg-type]
            finally:
                os.close(fd)
            out[i + 1] = str(dst)
    return out


_CLONE_NEWNS, _MS_REC, _MS_PRIVATE, _MS_BIND, _MS_MOVE = 0x20000, 0x4000, 0x40000, 0x1000, 0x2000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT = 0x1, 0x2, 0x4, 0x20


def _expose_interpreter() -> None:
    """The box users must run this Python, which may live where they cannot go (pyenv under /root, 0700). In a
    mount namespace of their own, that folder is replaced by an empty tmpfs holding only the interpreter's
    install, read-only: nothing else of the grader's home is visible to them."""
    import ctypes

    prefix = Path(sys.base_prefix).resolve()
    blocked = next((p for p in [*reversed(prefix.parents), prefix] if not os.stat(p).st_mode & 0o001), None)
    if blocked is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        if libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags,
                      data and data.encode()) != 0:  # fmt: skip
            raise OSError(ctypes.get_errno(), f"mount {source} on {target}: {os.strerror(ctypes.get_errno())}")

    if libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS): " + os.strerror(ctypes.get_errno()))
    mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    hold = Path(tempfile.mkdtemp(prefix="tritonlab-python-"))
    mount(str(prefix), str(hold), None, _MS_BIND | _MS_REC)
    mount(None, str(hold), None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY)
    mount("tmpfs", str(blocked), "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=1m")
    prefix.mkdir(parents=True, exist_ok=True)
    mount(str(hold), str(prefix), None, _MS_MOVE)
    hold.rmdir()


def enter(box: Box, command: list[str], role: str = "kernel") -> None:
    """Apply the box to this process and exec ``command`` in it as its ``role`` (does not return).

    kernel: the cgroup, rlimits, the staged server, the workspace and the box uid. checker: the checker uid (the
    kernel's gid, so it reads what the learner wrote), nothing else; the grader waits for it and times it out.
    """
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if role == "checker":
        if box.checker_uid is not None:
            _expose_interpreter()
            os.setgroups([])
            os.setgid(box.uid)  # type: ignore[arg-type]
            os.setuid(box.checker_uid)
        os.execvpe(command[0], command, env)
    if box.cgroup is not None:
        (box.cgroup / "cgroup.procs").write_text(str(os.getpid()))
    else:
        resource.setrlimit(resource.RLIMIT_AS, (box.memory_bytes, box.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    env.update(HOME=str(box.home), TRITONLAB_CACHE_DIR=str(box.cache), IPYTHONDIR=str(box.home / ".ipython"),
               MPLCONFIGDIR=str(box.home / ".matplotlib"), TMPDIR=str(box.home))  # fmt: skip
    # The staged server, staged here as root: read-only for the box, so the binary the checker trusts is the
    # grader's (the kernel's Triton must run it: see grading.nbgrader.box_server).
    os.environ["TRITONLAB_CACHE_DIR"] = str(box.cache)
    from tritonlab.server.staging import stage

    staged = stage()
    for path in [staged.root, *staged.root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o755)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_BYTES, FSIZE_BYTES))
    if box.uid is not None:
        cwd = Path.cwd()
        if box.workspaces is None or (cwd != box.workspaces and box.workspaces not in cwd.parents):
            raise SystemExit(f"the kernel's folder {cwd} is not under {box.workspaces}")
        # The notebook's folder is the learner's workspace. fwalk holds each folder open, so a process of the box
        # swapping a folder for a link meanwhile cannot send root's chown outside it.
        os.lchown(cwd, box.uid, box.uid)
        for _, dirs, files, dir_fd in os.fwalk(cwd, follow_symlinks=False):
            for name in [*dirs, *files]:
                with contextlib.suppress(FileNotFoundError):  # a dying kernel's server may still be removing files
                    os.chown(name, box.uid, box.uid, dir_fd=dir_fd, follow_symlinks=False)
        for path in cwd.parents:
            if path == box.workspaces.parent:
                break
            path.chmod(0o711)
        command = _connection_file_for(box, command)
        _expose_interpreter()
        resource.setrlimit(resource.RLIMIT_NPROC, (box.nproc, box.nproc))
        os.setgroups([])
        os.setgid(box.uid)
        os.setuid(box.uid)
    os.umask(0o022)
    os.execvpe(command[0], command, env)


def main() -> None:
    role, *args = sys.argv[1:] or [""]
    if args[:1] == ["--"]:
        args = args[1:]
    if role not in ("kernel", "checker") or not args:
        raise SystemExit("usage: python -m tritonlab.grading.sandbox kernel|checker -- COMMAND...")
    enter(Box.from_environment(), args, role)


if __name__ == "__main__":
    main()
