"""Child processes of a run: registrants to kill with SIGKILL, population holders to drive.

Every child is started through :class:`Children`, which remembers it, so that
whatever ends the run (the last workload, an error, Ctrl-C) every child is
killed by its own pid and reaped; nothing outlives the benchmark. A
:class:`Child` reads its standard output in a thread, so a caller can wait
for a line such as ``ready 2500`` with a timeout, and keeps its standard
error in a temporary file whose tail goes into the error when it fails.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence


class ChildFailed(RuntimeError):
    """A child process exited or stayed silent instead of answering."""


class Child:
    """One child process with a line-by-line view of its output."""

    def __init__(self, argv: Sequence[str], *, interactive: bool = False) -> None:
        # Kept open for the child's life (its stderr goes there); closed in _close_pipes.
        self._stderr = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"bench-child-{self.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, word: str, timeout: float) -> list[str]:
        """Wait for the next output line starting with ``word`` and return its fields.

        Raises:
            ChildFailed: the process ended, or no such line came within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            fields = self.next_line(max(0.0, deadline - time.monotonic()), word).split()
            if fields and fields[0] == word:
                return fields

    def next_line(self, timeout: float, waiting_for: str = "a line") -> str:
        """The next line the child printed, whatever it says.

        Raises:
            ChildFailed: the process ended, or printed nothing within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildFailed(f"process {self.pid}: no {waiting_for!r} within {timeout:g} s{self._tail()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._lines.put(None)  # every later read sees the end too
                self.proc.wait()
                raise ChildFailed(f"process {self.pid} exited with {self.proc.returncode}{self._tail()}")
            return line

    def send(self, line: str) -> None:
        """Write one command line to the child's standard input.

        Raises:
            ChildFailed: the child is gone.
        """
        if self.proc.stdin is None:
            raise ChildFailed(f"process {self.pid} takes no input")
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise ChildFailed(f"process {self.pid} is gone{self._tail()}") from exc

    @property
    def running(self) -> bool:
        """Whether the process has not exited."""
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process (no cleanup of any kind, as a crash) and reap it. Idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.proc.wait()
        self._close_pipes()

    def finish(self, timeout: float) -> None:
        """Close standard input, wait for a clean exit, SIGKILL after ``timeout`` seconds."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self._stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def stderr_tail(self, limit: int = 800) -> str:
        """The last ``limit`` characters the child wrote to standard error (its library warnings)."""
        try:
            self._stderr.seek(0)
            return str(self._stderr.read().decode("utf-8", "replace").strip()[-limit:])
        except (OSError, ValueError):
            return ""

    def _tail(self) -> str:
        text = self.stderr_tail()
        return f"; stderr: ...{text}" if text else ""


class Children:
    """Every child process of the run, killed by pid when the run ends."""

    def __init__(self) -> None:
        self._children: list[Child] = []
        self._lock = threading.Lock()

    def spawn(self, module: str, *args: str, interactive: bool = False) -> Child:
        """Start ``python -m module args...`` with this interpreter."""
        child = Child([sys.executable, "-m", module, *args], interactive=interactive)
        with self._lock:
            self._children = [c for c in self._children if c.running]
            self._children.append(child)
        return child

    def kill_all(self) -> None:
        """SIGKILL every child still running."""
        with self._lock:
            children, self._children = self._children, []
        for child in children:
            child.kill()


def start_registrants(
    children: Children, url: str, service: str, ttl: float, ids: Sequence[str], chunk: int
) -> list[Child]:
    """Start ``discovery.testing._registrant`` processes holding ``ids``, at most ``chunk`` ids each."""
    return [
        children.spawn("discovery.testing._registrant", url, service, f"{ttl:g}", *ids[start : start + chunk])
        for start in range(0, len(ids), chunk)
    ]


def wait_ready(registrants: Sequence[Child], timeout: float) -> int:
    """Wait until every registrant printed ``ready N``; return the total N.

    Raises:
        ChildFailed: one exited or was not ready within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    total = 0
    for child in registrants:
        fields = child.expect("ready", max(0.1, deadline - time.monotonic()))
        total += int(fields[1]) if len(fields) > 1 else 0
    return total
