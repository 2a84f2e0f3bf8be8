"""Providers: pick one instance of a service to call, from a cache, by a strategy, sitting out the failing ones.

A :class:`Provider` (made by :meth:`discovery.ServiceCache.provider`) answers
:meth:`~Provider.pick` from the cache's current :class:`~discovery.ServiceView`,
read at every pick, so it never returns an instance whose ``REMOVED`` the
cache has applied. What a pick chooses among (the instances the filter
accepts, those of the preferred zone first, less the ones that are down) is
derived once per view version and per change of the down set, then reused:
a pick copies nothing and costs O(1), or O(log n) for ``weighted``. Strategies,
after Curator's ``ProviderStrategy``, are small interchangeable objects:
``round-robin``, ``random``, ``sticky`` and ``weighted`` (by ``meta["weight"]``).
Callers report failed calls with :meth:`~Provider.report_error`; as with
Curator's ``DownInstancePolicy``, an instance with ``errors`` errors within
``window`` seconds sits out ``cooldown`` seconds, then comes back by itself.
"""

from __future__ import annotations

import abc
import bisect
import itertools
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from discovery._validation import MAX_WEIGHT, check_segment, check_service
from discovery.errors import InvalidName, InvalidValue, NoInstances
from discovery.models import Instance

if TYPE_CHECKING:
    from discovery.cache import ServiceCache, ServiceView

__all__ = ["DEFAULT_POLICY", "STRATEGIES", "Filter", "Provider"]

Filter = Callable[[Instance], bool]
"""A predicate on an instance: the instances it rejects are never picked."""

DEFAULT_POLICY: Mapping[str, float] = MappingProxyType({"errors": 2, "window": 30.0, "cooldown": 30.0})
"""The down-instance policy's defaults: 2 errors within 30 s make an instance sit out 30 s."""

_MAX_ERRORS = 1_000_000


@dataclass(frozen=True)
class _Split:
    """A view filtered and split by zone; rebuilt only when the view's version moves."""

    version: int
    preferred: tuple[Instance, ...]
    """In the zone; every accepted instance when the provider has no zone."""
    others: tuple[Instance, ...]
    reason: str | None
    """Why nothing is accepted (``no-instances``, ``filtered-out``), or None."""


@dataclass(frozen=True)
class _Pool:
    """What a pick chooses among, for one view version and one down set."""

    version: int
    epoch: int
    instances: tuple[Instance, ...]
    by_id: Mapping[str, Instance]
    cumulative: tuple[float, ...]
    """Running sums of the weights, for ``weighted`` only (empty otherwise)."""
    reason: str | None


def _weight(instance: Instance) -> float:
    """``meta["weight"]``, or 1 when absent or not a valid weight (a value written by another tool)."""
    weight = instance.meta.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= MAX_WEIGHT:
        return 1.0
    return float(weight)


class _Strategy(abc.ABC):
    """Chooses one instance of a non-empty pool; called under the provider's lock, so it may keep state."""

    weighted: ClassVar[bool] = False

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    @abc.abstractmethod
    def choose(self, pool: _Pool) -> Instance:
        """One instance of ``pool.instances`` (never empty)."""


class _RoundRobin(_Strategy):
    """Each instance in turn, by id; from a random start, so that many clients do not all begin at the first."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self._counter = itertools.count(rng.randrange(1 << 30))

    def choose(self, pool: _Pool) -> Instance:
        return pool.instances[next(self._counter) % len(pool.instances)]


class _Random(_Strategy):
    """Any instance, uniformly."""

    def choose(self, pool: _Pool) -> Instance:
        return self._rng.choice(pool.instances)


class _Sticky(_Strategy):
    """The same instance while it stays in the pool; then another one, at random."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self._current: str | None = None

    def choose(self, pool: _Pool) -> Instance:
        if self._current is not None:
            instance = pool.by_id.get(self._current)
            if instance is not None:
                return instance
        instance = self._rng.choice(pool.instances)
        self._current = instance.id
        return instance


class _Weighted(_Strategy):
    """Any instance, with a probability proportional to its weight: a bisection of the running sums."""

    weighted = True

    def choose(self, pool: _Pool) -> Instance:
        point = self._rng.random() * pool.cumulative[-1]
        # random() < 1, yet the product may round up to the total.
        index = min(bisect.bisect_right(pool.cumulative, point), len(pool.instances) - 1)
        return pool.instances[index]


_STRATEGIES: Mapping[str, type[_Strategy]] = MappingProxyType(
    {"random": _Random, "round-robin": _RoundRobin, "sticky": _Sticky, "weighted": _Weighted}
)
STRATEGIES: tuple[str, ...] = tuple(_STRATEGIES)
"""The strategy names a provider accepts."""


def _check_policy(policy: Mapping[str, Any]) -> tuple[int, float, float]:
    unknown = sorted(set(policy) - set(DEFAULT_POLICY))
    if unknown:
        known = ", ".join(DEFAULT_POLICY)
        raise InvalidValue(unknown[0], policy[unknown[0]], f"not a provider option; known: {known}")
    errors = policy.get("errors", DEFAULT_POLICY["errors"])
    if isinstance(errors, bool) or not isinstance(errors, int) or not 1 <= errors <= _MAX_ERRORS:
        raise InvalidValue("errors", errors, f"must be a whole number of errors in 1..{_MAX_ERRORS}")
    seconds: list[float] = []
    for name in ("window", "cooldown"):
        value = policy.get(name, DEFAULT_POLICY[name])
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise InvalidValue(name, value, "must be a positive finite number of seconds")
        seconds.append(float(value))
    return errors, seconds[0], seconds[1]


class Provider:
    """Picks instances of one service from a :class:`~discovery.ServiceCache`; thread-safe.

    Made by ``cache.provider(service, strategy, filter=..., zone=..., **policy)``.

    Strategies: ``round-robin`` (each instance in turn, by id: n picks in a
    row over n unchanged instances visit each once), ``random`` (uniform),
    ``sticky`` (the same instance as long as it stays pickable: until it
    leaves the cache, is rejected by the filter after an update, goes down,
    or lies outside the zone once the zone has an instance again; then
    another at random) and ``weighted`` (in proportion to ``meta["weight"]``;
    no weight, or one another tool wrote that :func:`register
    <discovery.Registry.register>` would refuse, counts as 1).

    With a ``zone``, only instances whose ``meta["zone"]`` equals it are
    picked while any of them is pickable (accepted by the filter and not
    down); the others only when none is, and the zone again as soon as one is.

    Down instances: after ``errors`` calls of :meth:`report_error` for an
    instance (by id) within ``window`` seconds, the instance is skipped for
    ``cooldown`` seconds, then comes back by itself; errors reported while it
    is down do not prolong it. When every instance the filter accepts is
    down, :meth:`pick` raises :class:`~discovery.NoInstances` with reason
    ``all-down`` rather than fall back to a failing instance (Curator returns
    nothing): the caller decides, and the instances come back after their
    cool-down, or sooner when a new instance registers.

    A provider reads the cache's current view at each pick, so it follows the
    cache; a closed or broken cache keeps answering from its last contents,
    as its lookups do (see :attr:`discovery.ServiceCache.broken`).

    Attributes:
        cache: the cache picks are answered from.
        service: the service path.
        strategy: the strategy's name, one of :data:`STRATEGIES`.
        zone: the preferred zone, or None.
        errors: errors within ``window`` that make an instance down.
        window: seconds within which ``errors`` errors count.
        cooldown: seconds a down instance sits out.
    """

    def __init__(
        self,
        cache: ServiceCache,
        service: str,
        strategy: str = "round-robin",
        *,
        filter: Filter | None = None,
        zone: str | None = None,
        **policy: Any,
    ) -> None:
        """Make a provider; prefer :meth:`discovery.ServiceCache.provider`.

        Args:
            cache: the cache to pick from.
            service: the service path (exactly; not its sub-services).
            strategy: ``round-robin`` (default), ``random``, ``sticky`` or ``weighted``.
            filter: a predicate; instances it rejects are never picked. It is
                called once per instance per change of the service, under the
                provider's lock, so it must depend on the instance alone and
                must not call the provider.
            zone: prefer instances with this ``meta["zone"]``; a name, by the
                rules of an instance id.
            **policy: the down-instance policy: ``errors`` (a whole number,
                default 2), ``window`` and ``cooldown`` (seconds, default 30 each).

        Raises:
            InvalidName: a bad service path.
            InvalidValue: an unknown strategy (field ``strategy``), a filter
                that is not callable, a bad zone, an unknown policy option or
                a bad value for one (the field names it).
        """
        self.service = check_service(service)
        if strategy not in _STRATEGIES:
            raise InvalidValue("strategy", strategy, f"unknown strategy; known: {', '.join(STRATEGIES)}")
        if filter is not None and not callable(filter):
            raise InvalidValue("filter", filter, "must be a callable taking an Instance, or None")
        if zone is not None:
            try:
                check_segment("zone", zone)
            except InvalidName as exc:
                raise InvalidValue("zone", zone, exc.reason) from None
        self.errors, self.window, self.cooldown = _check_policy(policy)
        self.cache = cache
        self.strategy = strategy
        self.zone = zone
        self._filter = filter
        self._lock = threading.Lock()
        self._chooser = _STRATEGIES[strategy](random.Random())
        self._split: _Split | None = None
        self._pool: _Pool | None = None
        self._recent: dict[str, deque[float]] = {}
        self._down: dict[str, float] = {}
        self._next_return = math.inf
        self._epoch = 0
        self._clock: Callable[[], float] = time.monotonic

    def pick(self) -> Instance:
        """One instance to call, by the provider's strategy, from the cache's current view.

        Returns:
            An instance in the cache's view at the time of the call, accepted
            by the filter, not down, of the zone if any of the zone is pickable.

        Raises:
            NoInstances: nothing to pick; ``reason`` says why:
                ``no-instances``, ``filtered-out`` or ``all-down``.
            Exception: whatever the filter raises.
        """
        with self._lock:
            view = self.cache.view(self.service)
            if self._clock() >= self._next_return:
                self._release()
            pool = self._pool
            if pool is None or pool.version != view.version or pool.epoch != self._epoch:
                pool = self._pool = self._make_pool(view)
            if not pool.instances:
                raise NoInstances(self.service, pool.reason or "no-instances")
            return self._chooser.choose(pool)

    def report_error(self, instance: Instance) -> None:
        """Report a failed call to ``instance``; enough of them within the window make it sit out the cool-down.

        Args:
            instance: an instance this provider picked (matched by id).

        Raises:
            InvalidValue: ``instance`` is not an instance of this provider's service.
        """
        if not isinstance(instance, Instance) or instance.service != self.service:
            raise InvalidValue("instance", instance, f"not an instance of {self.service!r}")
        now = self._clock()
        with self._lock:
            if self._down.get(instance.id, -math.inf) > now:
                return
            recent = self._recent.get(instance.id)
            if recent is None:
                recent = self._recent[instance.id] = deque(maxlen=self.errors)
            recent.append(now)
            if len(recent) == self.errors and now - recent[0] <= self.window:
                del self._recent[instance.id]
                self._down[instance.id] = now + self.cooldown
                self._next_return = min(self._next_return, now + self.cooldown)
                self._epoch += 1

    @property
    def down(self) -> frozenset[str]:
        """The ids of the instances sitting out a cool-down now."""
        now = self._clock()
        with self._lock:
            return frozenset(instance_id for instance_id, until in self._down.items() if until > now)

    def __repr__(self) -> str:
        zone = f" zone={self.zone!r}" if self.zone is not None else ""
        return f"<Provider {self.service!r} {self.strategy}{zone} down={len(self._down)}>"

    # -- derived state, rebuilt under the lock only when something changed ----

    def _release(self) -> None:
        """End the cool-downs that are over."""
        now = self._clock()
        over = [instance_id for instance_id, until in self._down.items() if until <= now]
        for instance_id in over:
            del self._down[instance_id]
        self._next_return = min(self._down.values(), default=math.inf)
        if over:
            self._epoch += 1

    def _make_split(self, view: ServiceView) -> _Split:
        accepted = view.instances
        if self._filter is not None:
            accepted = tuple(instance for instance in accepted if self._filter(instance))
        reason = "no-instances" if not view.instances else "filtered-out" if not accepted else None
        # Errors of instances that left the cache can no longer matter.
        for instance_id in [i for i in self._recent if i not in view.by_id]:
            del self._recent[instance_id]
        if self.zone is None:
            return _Split(view.version, accepted, (), reason)
        preferred = tuple(instance for instance in accepted if instance.meta.get("zone") == self.zone)
        others = tuple(instance for instance in accepted if instance.meta.get("zone") != self.zone)
        return _Split(view.version, preferred, others, reason)

    def _make_pool(self, view: ServiceView) -> _Pool:
        split = self._split
        if split is None or split.version != view.version:
            split = self._split = self._make_split(view)
        live: tuple[Instance, ...] = ()
        for group in (split.preferred, split.others):
            live = tuple(instance for instance in group if instance.id not in self._down) if self._down else group
            if live:
                break
        reason = split.reason or (None if live else "all-down")
        cumulative = tuple(itertools.accumulate(map(_weight, live))) if self._chooser.weighted else ()
        by_id = MappingProxyType({instance.id: instance for instance in live})
        return _Pool(view.version, self._epoch, live, by_id, cumulative, reason)
