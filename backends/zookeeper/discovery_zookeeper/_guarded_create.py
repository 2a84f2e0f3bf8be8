"""A create that happens only if some znodes still have the data versions read earlier: one ZooKeeper ``multi``.

A ``multi`` (request type 14) applies all its operations or none. Its body is
a multi header (operation type, done = false, error = -1) before each
operation, closed by a header (-1, true, -1). Here the operations are
``check`` (type 13: the path as a length-prefixed UTF-8 string, then the
expected data version) for each guard, then ``create`` (type 1: path, data
as a length-prefixed buffer, the ACL list, the create flags). The reply
holds, per operation, a header and its result (nothing for a ``check``, the
created path for a ``create``; ZooKeeper 3.8 answers a ``create2`` inside a
multi the same way, without the stat). The zxid of the write, which is the
new znode's ``czxid`` and ``mzxid``, is the one in the reply's header: a
multi is one transaction. When the multi fails, every operation's header has
type -1 and is followed by an error code: 0 for operations before the one
that failed, that one's own code (``BadVersion``, ``NoNode``,
``NodeExists``...), -2 (``RuntimeInconsistency``) after it.
:class:`GuardedCreate` has the shape kazoo's request queue expects, so it is
sent with the client's own ``_call`` like any kazoo request. kazoo passes
the answer of every request of type 14 through its transactions' chroot
handling, which iterates it (on the connection thread, where an exception
would end the thread): the answer is therefore a one-item list.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from discovery_zookeeper._kazoo_private import reply_zxid

__all__ = ["CHECK", "CREATE", "EPHEMERAL", "MULTI", "Created", "GuardFailed", "GuardedCreate"]

MULTI = 14
"""ZooKeeper's request type (OpCode) of ``multi``."""
CHECK = 13
"""ZooKeeper's request type (OpCode) of ``check`` (a data version, inside a multi)."""
CREATE = 1
"""ZooKeeper's request type (OpCode) of ``create``."""
EPHEMERAL = 1
"""The create flag of an ephemeral znode (``CreateMode.EPHEMERAL``)."""
_ERROR = -1
_RUNTIME_INCONSISTENCY = -2

_INT = struct.Struct("!i")
_HEADER = struct.Struct("!iBi")
_CLOSE = _HEADER.pack(_ERROR, 1, _ERROR)


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _INT.pack(len(data)) + data


@dataclass(frozen=True)
class Created:
    """A guarded create that succeeded.

    Attributes:
        zxid: the zxid of the write: the new znode's ``czxid`` and ``mzxid``.
    """

    zxid: int


@dataclass(frozen=True)
class GuardFailed:
    """A guarded create that the server refused as a whole: nothing was written.

    Attributes:
        index: the operation that failed: a guard's index, or ``len(guards)`` and up for a create.
        code: ZooKeeper's error code of that operation (``-103`` bad version, ``-101`` no node,
            ``-110`` node exists...).
    """

    index: int
    code: int


@dataclass(frozen=True)
class GuardedCreate:
    """Create ``path`` only if every guard's znode exists at the data version given, in one atomic ``multi``.

    Attributes:
        guards: ``(server path, data version)`` pairs, checked in order.
        path: the server path to create (no chroot is applied).
        data: the new znode's data.
        acl: the new znode's ACL: kazoo ``ACL`` tuples (``perms``, ``id.scheme``, ``id.id``).
        flags: the create flags (:data:`EPHEMERAL`, or 0 for a persistent znode).
        more: further ``(server path, data)`` znodes created in the same
            ``multi``, after ``path``, with the same ACL and flags (a bulk
            registration: all are created, or none).
    """

    type: ClassVar[int] = MULTI
    guards: tuple[tuple[str, int], ...]
    path: str
    data: bytes
    acl: tuple[Any, ...]
    flags: int = EPHEMERAL
    more: tuple[tuple[str, bytes], ...] = ()

    def serialize(self) -> bytes:
        """The request body: a ``check`` per guard, then each ``create``, each behind its multi header."""
        body = bytearray()
        for path, version in self.guards:
            body += _HEADER.pack(CHECK, 0, _ERROR)
            body += _string(path) + _INT.pack(version)
        acl = bytearray(_INT.pack(len(self.acl)))
        for entry in self.acl:
            acl += _INT.pack(entry.perms) + _string(entry.id.scheme) + _string(entry.id.id)
        for path, data in ((self.path, self.data), *self.more):
            body += _HEADER.pack(CREATE, 0, _ERROR)
            body += _string(path) + _INT.pack(len(data)) + data + acl + _INT.pack(self.flags)
        body += _CLOSE
        return bytes(body)

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> list[Created | GuardFailed]:
        """``[Created]`` with the write's zxid, or ``[GuardFailed]``; kazoo calls this for the reply.

        A list of one, because kazoo iterates the answer of any ``multi`` (see the module's docstring).
        """
        zxid = reply_zxid(buffer, offset)
        created = False
        failed: GuardFailed | None = None
        index = 0
        while True:
            kind, done, error = _HEADER.unpack_from(buffer, offset)
            offset += _HEADER.size
            if done:
                break
            if kind == _ERROR:
                (code,) = _INT.unpack_from(buffer, offset)
                offset += _INT.size
                code = code or error
                if failed is None and code not in (0, _RUNTIME_INCONSISTENCY):
                    failed = GuardFailed(index, code)
            elif kind == CREATE:
                (length,) = _INT.unpack_from(buffer, offset)
                offset += _INT.size + max(length, 0)
                created = True
            elif kind != CHECK:
                raise ValueError(f"multi reply holds an operation of type {kind}, not check or create")
            index += 1
        if failed is not None:
            return [failed]
        if not created:
            raise ValueError("multi reply holds no create result")
        return [Created(zxid)]
