"""Fixtures of the CLI tests: run the real ``discovery`` command in subprocesses, and clean up after it.

:class:`Cli` runs ``python -m discovery.cli`` with a clean environment (no
``DISCOVERY_URL`` or config file, a private state directory, a wide terminal
for rich), either to completion (:meth:`Cli.run`) or in the background
(:meth:`Cli.spawn`), where a reader thread collects stdout line by line so a
test can wait for a line with a deadline. Every background process still
running at the end of a test is killed by its pid. The local servers come from
the session fixtures ``etcd_cluster`` and ``zookeeper_cluster`` that the root
``conftest.py`` loads.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    """``text`` without ANSI colour codes."""
    return ANSI.sub("", text)


@dataclass(frozen=True)
class Result:
    """A finished command: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        """stdout without colour codes."""
        return plain(self.out)


class Running:
    """A ``discovery`` command running in the background; its stdout is read line by line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, err_path: Path) -> None:
        self.args = args
        self._err_path = err_path
        self._err = err_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "discovery.cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def err(self) -> str:
        """What the command wrote to stderr so far."""
        return self._err_path.read_text()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30.0, what: str = "a line") -> str:
        """Read lines until one satisfies ``predicate``; fail after ``timeout`` seconds or at end of output."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {timeout:g} s; stdout: {self.lines!r}; stderr: {self.err!r}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)
                raise AssertionError(f"output ended before {what}; stdout: {self.lines!r}; stderr: {self.err!r}")
            self.lines.append(line)
            if predicate(plain(line)):
                return plain(line)

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30.0) -> int:
        """Send ``signum`` to the process (by pid) and wait for its exit code."""
        self.process.send_signal(signum)
        return self.process.wait(timeout)

    def rest(self, timeout: float = 10.0) -> list[str]:
        """The remaining stdout lines, once the process has ended."""
        self._reader.join(timeout)
        rest: list[str] = []
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                rest.append(plain(line))
        self.lines.extend(rest)
        return rest

    def kill(self) -> None:
        """SIGKILL the process if it still runs, and release its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._err.close()


class Cli:
    """Runs the real ``discovery`` command with a clean, private environment."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.cwd = tmp_path / "cwd"
        self.cwd.mkdir()
        self.state_dir = tmp_path / "state"
        env = dict(os.environ)
        for name in ("DISCOVERY_URL", "DISCOVERY_CONFIG", "NO_COLOR", "FORCE_COLOR"):
            env.pop(name, None)
        env.update(DISCOVERY_STATE_DIR=str(self.state_dir), PYTHONUNBUFFERED="1", COLUMNS="200")
        self.env = env
        self.running: list[Running] = []

    def run(self, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> Result:
        """Run ``discovery ARGS...`` to completion."""
        done = subprocess.run(
            [sys.executable, "-m", "discovery.cli", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def spawn(self, *args: str) -> Running:
        """Start ``discovery ARGS...`` in the background; killed at the end of the test if still running."""
        running = Running(list(args), self.env, self.cwd, self.tmp_path / f"stderr-{len(self.running)}.txt")
        self.running.append(running)
        return running

    def close(self) -> None:
        """Kill what still runs."""
        for running in self.running:
            running.kill()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """The ``discovery`` command in a private environment; background processes are killed afterwards."""
    runner = Cli(tmp_path)
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture
def root() -> str:
    """A fresh key root, so tests sharing a server never see each other's instances."""
    return f"/cli-{uuid.uuid4().hex[:10]}"
