"""The ``acl`` option: which identities may do what to the znodes the registry creates.

ZooKeeper keeps an ACL on each znode, set when it is created; kazoo gives
every create of the backend's client the parsed list (``default_acl``), so
service paths (persistent parents), instances (ephemeral), service
definitions and a missing root all carry it. The option is a
comma-separated list of ``WHO:PERMS`` entries:

- ``WHO`` is ``owner``, the digest identity of the connection's
  ``auth_digest`` credentials; ``world`` (alias ``anyone``), every client;
  or an identity in ZooKeeper's own notation: ``world:anyone``,
  ``digest:USER:HASH`` (``HASH`` the base64 SHA-1 of ``USER:PASSWORD``, as
  ``zkCli.sh setAcl`` takes it) or ``ip:ADDRESS[/BITS]``;
- ``PERMS`` is ``all``, ``read``, or letters of ZooKeeper's ``cdrwa``
  (create, delete, read, write, admin).

``acl=owner:all,world:read`` lets the registry's own identity do anything
and every other client read (and watch), and nothing else. Empty (the
default) keeps ZooKeeper's open ACL, ``world:anyone:cdrwa``. The ACL must
grant the registry itself ``cdrw`` (through ``owner``, its own digest or
``world``): it creates and deletes instances below the service paths it
created, and reads and updates them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress

from kazoo.security import ACL, Id, Permissions, make_digest_acl_credential

from discovery.errors import InvalidOption

__all__ = ["ACL_HELP", "parse_acl"]

ACL_HELP = (
    "ACL of the znodes the registry creates, comma-separated WHO:PERMS; WHO is owner (the auth_digest identity), "
    "world, digest:USER:HASH or ip:ADDR[/BITS]; PERMS is all, read or letters of cdrwa; "
    "e.g. owner:all,world:read (empty: open to all)"
)
"""The option's help line."""

_LETTERS: dict[str, int] = {
    "c": Permissions.CREATE,
    "d": Permissions.DELETE,
    "r": Permissions.READ,
    "w": Permissions.WRITE,
    "a": Permissions.ADMIN,
}
_WORDS: dict[str, int] = {"all": Permissions.ALL, "read": Permissions.READ}
_NEEDED: int = Permissions.CREATE | Permissions.DELETE | Permissions.READ | Permissions.WRITE
_WORLD = Id("world", "anyone")


def _refuse(text: str, reason: str) -> InvalidOption:
    return InvalidOption("acl", text, reason)


def _perms(text: str, entry: str, perms: str) -> int:
    if perms in _WORDS:
        return _WORDS[perms]
    if not perms or any(letter not in _LETTERS for letter in perms) or len(set(perms)) != len(perms):
        raise _refuse(text, f"entry {entry!r}: permissions are all, read or distinct letters of cdrwa, not {perms!r}")
    value = 0
    for letter in perms:
        value |= _LETTERS[letter]
    return value


def _identity(text: str, entry: str, who: list[str], owner: Id | None) -> Id:
    scheme, rest = who[0], ":".join(who[1:])
    if scheme == "owner" and not rest:
        if owner is None:
            raise _refuse(text, f"entry {entry!r}: owner is the auth_digest identity, and auth_digest is not set")
        return owner
    if (scheme in ("world", "anyone") and not rest) or (scheme == "world" and rest == "anyone"):
        return _WORLD
    if scheme == "digest" and len(who) == 3:
        user, digest = who[1], who[2]
        try:
            decoded = base64.b64decode(digest, validate=True)
        except binascii.Error:
            decoded = b""
        if not user or len(decoded) != 20:
            raise _refuse(
                text, f"entry {entry!r}: a digest identity is USER:HASH, HASH the base64 SHA-1 of USER:PASSWORD"
            )
        return Id("digest", rest)
    if scheme == "ip" and rest:
        try:
            ipaddress.ip_network(rest, strict=False)
        except ValueError:
            raise _refuse(text, f"entry {entry!r}: {rest!r} is not an address or ADDRESS/BITS") from None
        return Id("ip", rest)
    raise _refuse(text, f"entry {entry!r}: WHO is owner, world, digest:USER:HASH or ip:ADDR[/BITS]")


def parse_acl(text: str, auth_digest: str) -> tuple[ACL, ...]:
    """The ACL the ``acl`` option describes; empty for an empty option (ZooKeeper's open ACL).

    Args:
        text: the option's value, like ``owner:all,world:read``.
        auth_digest: the connection's ``user:password``, which ``owner`` stands for; ``""`` for none.

    Returns:
        One ACL entry per identity, permissions of repeated identities merged, in the order given.

    Raises:
        InvalidOption: naming ``acl``: an entry that does not parse, ``owner``
            without ``auth_digest``, or an ACL that does not grant the
            registry itself create, delete, read and write.
    """
    if not text.strip():
        return ()
    owner = None
    if auth_digest:
        user, _, password = auth_digest.partition(":")
        owner = Id("digest", make_digest_acl_credential(user, password))
    granted: dict[Id, int] = {}
    for raw in text.split(","):
        entry = raw.strip()
        parts = entry.split(":")
        if len(parts) < 2 or not all(parts[:1]):
            raise _refuse(text, f"entry {entry!r} is not WHO:PERMS")
        identity = _identity(text, entry, parts[:-1], owner)
        granted[identity] = granted.get(identity, 0) | _perms(text, entry, parts[-1])
    own = granted.get(_WORLD, 0) | (granted.get(owner, 0) if owner is not None else 0)
    if own & _NEEDED != _NEEDED:
        raise _refuse(
            text,
            "the registry itself needs create, delete, read and write (cdrw) on its znodes, through owner or world",
        )
    return tuple(ACL(perms, identity) for identity, perms in granted.items())
