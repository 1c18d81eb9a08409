"""Start, watch and stop the lab's daemons. Every daemon has a pid file and a log file under .lab/."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class LabError(Exception):
    """A lab step failed; the message names the component and where to look."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def start(name: str, argv: list[str], *, logdir: Path, piddir: Path, netns: str | None = None,
          env: dict | None = None, cwd: Path | None = None) -> int:
    """Start a daemon in its own session (optionally inside a network namespace); return its pid."""
    logdir.mkdir(parents=True, exist_ok=True)
    piddir.mkdir(parents=True, exist_ok=True)
    log = logdir / f"{name}.log"
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=full_env, cwd=cwd)
    (piddir / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_pids(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM every process (group) at once, wait for all, SIGKILL what is left after `timeout`."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    stop_pids([pid], timeout)


def stop_all(piddirs: list[Path]) -> list[str]:
    """Stop every daemon recorded in these pid directories, in parallel; return their names."""
    found = {}
    for piddir in piddirs:
        for pidfile in sorted(piddir.glob("*.pid")) if piddir.is_dir() else []:
            pid = read_pid(pidfile)
            if pid and pid_alive(pid):
                found[f"{piddir.parent.name}/{pidfile.stem}"] = pid
            pidfile.unlink(missing_ok=True)
    stop_pids(list(found.values()))
    return sorted(found)


def check_port_free(host: str, port: int, component: str, netns: str | None = None) -> None:
    """Fail before anything starts when a port the lab needs is taken (root namespace only)."""
    if netns:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise LabError(f"{component}: {host}:{port} is already in use ({e.strerror}); "
                           f"stop whatever listens there (ss -ltnp 'sport = :{port}') or run `make lab-down`") from None


def wait_until(what: str, check, timeout: float, log: Path | None = None, interval: float = 0.2, pid: int | None = None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - the last error is reported below
            last = e
        if pid is not None and not pid_alive(pid):
            raise LabError(f"{what}: the process exited" + (f"; see {log}" if log else ""))
        time.sleep(interval)
    detail = f" (last error: {last})" if last else ""
    raise LabError(f"{what}: not ready after {timeout:.0f}s{detail}" + (f"; see {log}" if log else ""))
