"""One backend's side of a workload in a process of its own, driven by JSON lines: no shared GIL, no shared store.

A workload whose watchers of every backend would otherwise share the
benchmark's process (and its GIL: one backend's burst of 40,000 messages
then delays another's reads) runs each backend's side in a child started by
:class:`Side`: ``python -m discovery_bench.harness.side MODULE:FUNCTION ARGS``
imports the function and calls it with a :class:`Link` and the JSON
arguments. Both ends speak one message a line, a word and a JSON object
(``round {"rates": ...}``): the benchmark sends commands on the child's
standard input, the child answers on its standard output; end of input
means "finish". A side that raises answers ``failed`` with the error, which
:meth:`Side.expect` raises in the benchmark as :class:`SideFailed` with the
child's standard error tail. The child is a :class:`~discovery_bench.harness.procs.Child`
of the run, so it is killed by its pid however the run ends.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from discovery_bench.harness.procs import Child, ChildFailed, Children
from discovery_bench.harness.targets import BenchTarget

Message = dict[str, Any]
"""The JSON object of one message."""


class SideFailed(ChildFailed):
    """The side raised (its error and traceback are in the message), or it ended or went silent."""


class Link:
    """The child's end: commands from standard input, answers to standard output."""

    def __init__(self, commands: TextIO | None = None, answers: TextIO | None = None) -> None:
        self._commands = commands if commands is not None else sys.stdin
        self._answers = answers if answers is not None else sys.stdout

    def send(self, word: str, **payload: Any) -> None:
        """Answer ``word`` with ``payload`` (JSON-serialisable values)."""
        self._answers.write(f"{word} {json.dumps(payload, separators=(',', ':'))}\n")
        self._answers.flush()

    def receive(self) -> tuple[str, Message] | None:
        """The next command, waiting for it; None at end of input (the benchmark is done with this side)."""
        for line in self._commands:
            word, _, body = line.strip().partition(" ")
            if word:
                return word, json.loads(body) if body else {}
        return None


SideFunction = Callable[[Link, Message], None]
"""A side: called in the child with its link and the arguments it was started with."""


def target_args(target: BenchTarget) -> Message:
    """``target`` as a side's arguments carry it."""
    return {"label": target.label, "url": target.url, "local": target.local}


def target_from(args: Message) -> BenchTarget:
    """The target :func:`target_args` packed."""
    return BenchTarget(str(args["label"]), str(args["url"]), bool(args["local"]))


class Side:
    """The benchmark's end of one side process.

    Args:
        children: the run's children, which kill it by pid however the run ends.
        function: the side, a module-level function of an importable module.
        args: its arguments, JSON-serialisable.
    """

    def __init__(self, children: Children, function: SideFunction, args: Message) -> None:
        name = f"{function.__module__}:{function.__qualname__}"
        self.child: Child = children.spawn(__name__, name, json.dumps(args), interactive=True)

    def send(self, word: str, **payload: Any) -> None:
        """Send the command ``word`` with ``payload``.

        Raises:
            ChildFailed: the side is gone.
        """
        self.child.send(f"{word} {json.dumps(payload, separators=(',', ':'))}")

    def expect(self, word: str, timeout: float) -> Message:
        """Wait for the answer ``word`` and return its payload; other answers before it are skipped.

        Raises:
            SideFailed: the side raised, ended, or did not answer within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.child.next_line(max(0.0, deadline - time.monotonic()), word)
            except ChildFailed as exc:
                raise SideFailed(str(exc)) from exc
            said, _, body = line.partition(" ")
            if said == "failed":
                failure = json.loads(body) if body else {}
                tail = self.child.stderr_tail(400)
                raise SideFailed(f"{failure.get('error', 'failed')}" + (f"; stderr: ...{tail}" if tail else ""))
            if said == word:
                answer: Message = json.loads(body) if body else {}
                return answer

    def ask(self, word: str, wait: float, **payload: Any) -> Message:
        """Send ``word`` with ``payload`` and wait at most ``wait`` seconds for the answer of the same word.

        Raises:
            SideFailed: as :meth:`expect`.
        """
        self.send(word, **payload)
        return self.expect(word, wait)

    def finish(self, timeout: float = 30.0) -> None:
        """End of input: the side finishes and exits; killed after ``timeout`` seconds."""
        self.child.finish(timeout)

    def kill(self) -> None:
        """SIGKILL the side and reap it."""
        self.child.kill()


def main(argv: list[str]) -> int:
    """Run the side named ``MODULE:FUNCTION`` with the JSON arguments; answer ``failed`` if it raises."""
    name, arguments = argv
    module, _, function = name.partition(":")
    link = Link()
    try:
        side: SideFunction = getattr(importlib.import_module(module), function)
        side(link, json.loads(arguments))
    except Exception as exc:  # handed to the benchmark, which reports it
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        traceback.print_exc()
        link.send("failed", error=f"{type(exc).__name__}: {first}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
