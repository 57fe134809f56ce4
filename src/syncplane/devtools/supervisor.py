"""The demo's process supervisor: children in process groups of their own, their output shown with their
name in front and kept whole in a log file each, and one way to stop them all.

How stopping works: each child runs in a process group of its own, so Ctrl-C (SIGINT to the terminal's
foreground group) reaches only `make` and the demo, which then asks every child to stop, exactly once,
waits for them, and kills any that is still running after a grace period. SIGTERM and SIGHUP do the same. On
Linux the children also get SIGTERM from the kernel if the demo dies without cleaning up (kill -9), so a
demo never leaves servers behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from django.core.management.base import CommandError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 10  # after this, a child that has not stopped is killed (the simulators get 3 s more)
LONG_LINE = 240  # children's lines longer than this are cut on the console (the log file keeps them whole)


class ChildStopped(Exception):
    def __init__(self, child: Child):
        super().__init__(child.name)
        self.child = child


class Child:
    def __init__(self, name: str, description: str, process: subprocess.Popen, log_path: Path, stop_last: bool):
        self.name = name
        self.stop_last = stop_last
        self.description = description
        self.process = process
        self.log_path = log_path
        self.reader: threading.Thread | None = None


class Children:
    """The demo's child processes: started together, watched, and stopped together."""

    def __init__(self, log_dir: Path, stdout):
        self.log_dir = log_dir
        self.stdout = stdout
        self.children: list[Child] = []
        self.output_lock = threading.RLock()  # a signal handler may write while this thread holds it
        self.stop_signal: int | None = None  # the first stop signal received
        self.stopping = False
        self.hurry = False  # a second Ctrl-C while stopping: kill what is left
        self.deferring = False  # while a child is being started, a signal is noted and acted on afterwards
        self.running = False  # every child is up (the banner is out)

    # Signals -------------------------------------------------------------------------------------------------

    def trap_signals(self) -> None:
        # Installed whatever the inherited disposition: a background job (as in CI) starts with SIGINT ignored.
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        if self.stopping:
            if signum == signal.SIGINT and not self.hurry:
                self.hurry = True
                self._say("Ctrl-C again: killing what is left.")
            return
        if self.stop_signal is not None:  # already on its way out
            return
        self.stop_signal = signum
        if not self.deferring:
            raise KeyboardInterrupt

    # Starting and watching -----------------------------------------------------------------------------------

    def start(self, name: str, description: str, command: list[str], *, stop_last: bool = False) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        self.deferring = True
        try:
            process = subprocess.Popen(
                command,
                env=os.environ.copy(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,  # Ctrl-C reaches this process only; it stops the children itself
                preexec_fn=_die_with_parent(os.getpid()),
            )
            child = Child(name, description, process, log_path, stop_last)
            self.children.append(child)
        finally:
            self.deferring = False
        child.reader = threading.Thread(target=self._copy_output, args=(child,), name=f"output-{name}", daemon=True)
        child.reader.start()
        if self.stop_signal is not None and not self.stopping:
            raise KeyboardInterrupt

    def _copy_output(self, child: Child) -> None:
        """Each line of the child on the console, behind its name, and whole in its log file."""
        prefix = f"{child.name:<10} | "
        with open(child.log_path, "w", encoding="utf-8", errors="replace") as log_file:
            for raw in iter(child.process.stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                log_file.write(line + "\n")
                log_file.flush()
                shown = line if len(line) <= LONG_LINE else line[:LONG_LINE] + " [...]"
                self._say(prefix + shown)
        child.process.stdout.close()

    def _say(self, text: str) -> None:
        with self.output_lock:
            try:
                self.stdout.write(text)
                self.stdout.flush()
            except (OSError, ValueError):  # the console went away; the log files still have everything
                pass

    def check(self) -> None:
        for child in self.children:
            if child.process.poll() is not None:
                self.stopping = True  # from here on a signal must not interrupt the clean-up
                raise ChildStopped(child)

    def wait(self) -> None:
        while True:
            self.check()
            time.sleep(0.5)

    # Stopping ------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask every running child to stop, once; wait for them; kill those still running after a grace period.

        The simulators stop last, so that a sync the worker is finishing (Celery's warm shutdown) can still
        reach them."""
        self.stopping = True
        self._stop([child for child in self.children if not child.stop_last], GRACE_SECONDS)
        self._stop([child for child in self.children if child.stop_last], 3)
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=2)

    def _stop(self, group: list[Child], grace: float) -> None:
        for child in group:
            _terminate(child)  # each stops cleanly on SIGTERM (Celery: warm shutdown)
        deadline = time.monotonic() + grace
        while any(child.process.poll() is None for child in group):
            if self.hurry or time.monotonic() >= deadline:
                for child in group:
                    if child.process.poll() is None:
                        if not self.hurry:
                            self._say(f"The {child.name} process did not stop within {grace:.0f} s: killing it.")
                        _signal(child.process, signal.SIGKILL)
                for child in group:
                    child.process.wait()
                return
            time.sleep(0.1)


def _terminate(child: Child) -> None:
    if child.process.poll() is None:
        _signal(child.process, signal.SIGTERM)


def _signal(process: subprocess.Popen, signum: int) -> None:
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass


def _die_with_parent(parent_pid: int):
    """A function for Popen's preexec_fn: on Linux, the child gets SIGTERM when the demo dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the demo died before prctl took effect
            os._exit(1)

    return preexec


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for(url: str, children: Children, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.check()
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise CommandError(f"{url} did not answer within {timeout:.0f} s; the children's logs are in {children.log_dir}")
