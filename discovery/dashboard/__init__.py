"""A live web page of a registry: the status tree, each service's instances, the event log, pushed as they change.

One service cache in the server process; browsers receive its changes over
Server-Sent Events, coalesced, and never poll. ``discovery dashboard`` runs
it; a program does the same with::

    from discovery.dashboard import create_app, serve

    with discovery.connect("etcd://127.0.0.1:2379/services") as registry:
        serve(create_app(registry, "buzz"), "127.0.0.1", 8080)

Needs the ``dashboard`` extra (starlette, uvicorn). The page (HTML, CSS and
plain JavaScript in ``static/``) ships with the package: no build step, no
CDN, works offline. It is read-only and has no authentication.

Routes:

- ``/``: the page; ``/static/...``: its script and style sheet.
- ``/events``: the event stream (``text/event-stream``), below.
- ``/api/snapshot``: the page's contents as JSON, the body of a ``snapshot`` message.
- ``/sd/prometheus?prefix=P``: Prometheus ``http_sd_configs`` targets
  (:mod:`discovery.sd`); a bad prefix is a 400 ``{"error": ..., "field": "prefix"}``.
- ``/metrics``: :func:`discovery.metrics.enable` for the dashboard's cache;
  503 with the reason when that module (or prometheus_client) is missing.

The event stream. Every message has an ``id:`` ``<epoch>-<seq>``: ``seq``
numbers the server's messages from 1, ``epoch`` is random per server
start; an ``event:`` naming its type, and ``data:`` one JSON object whose
``type`` is that name again and whose ``revision`` is the registry
revision after the message:

- ``snapshot``: ``backend``, ``url`` (no credentials, no query string),
  ``prefix``, ``state``, ``reason``, ``revision``, ``tree``, ``instances``
  (every instance under the prefix: ``service``, ``id``, ``address``,
  ``port``, ``meta``, ``revision``) and ``log`` (the recent events and
  notices, newest first). Replaces everything the page holds; its id is
  that of the last message it includes.
- ``events``: ``events``, a list in order, each ``kind``
  (``added``/``updated``/``removed``), ``service``, ``id``, ``instance``
  (None for removed), ``revision``, ``resync``, ``expired``; at most 500
  per message.
- ``tree``: ``tree``, the whole status tree, each node ``name``, ``path``,
  ``health`` (``up``/``degraded``/``down``, computed by the core, never by
  the page), ``reason``, ``instances``, ``min``, ``total`` (live instances
  in its subtree), ``children``. Sent only when it differs from the last.
- ``state``: ``notice`` (``disconnected``, ``connected``,
  ``resync-started``, ``resynced``, ``broken``), ``state`` after it
  (``connected``, ``disconnected``, ``resyncing`` or ``broken``), ``reason``.

A new connection starts with a ``snapshot``. A browser that reconnects with
``Last-Event-ID`` (EventSource sends it; ``?last_event_id=`` works too)
receives the messages it missed if the server still holds all of them (a
ring of the last 1,000 messages, 16 MiB at most), else a fresh
``snapshot``; so does one whose id is of another epoch (the server
restarted) or one that falls behind the ring while connected. Changes are
flushed at most every 100 ms: a burst of registrations becomes a few
``events`` messages and one ``tree``. Idle streams get a ``: keepalive``
comment every 15 s.

Stable selectors for browser tests:

- ``body[data-ready="true"]``: the first snapshot was applied;
  ``body[data-stream]``: ``connecting``, ``open`` or ``reconnecting``
  (the browser's stream, not the registry's watch).
- ``#backend``, ``#url``, ``#prefix``; ``#revision[data-revision="N"]``;
  ``#watch-state[data-state="connected|disconnected|resyncing|broken"]``;
  ``#state-banner`` is visible whenever the state is not ``connected``.
- ``.node[data-service="buzz/api"]`` for each node of the tree (the root:
  ``data-service=""`` when the prefix is empty), with ``data-health="up|degraded|down"``,
  ``data-reason``, ``data-instances``, ``data-min`` (empty when
  undefined), ``data-total`` and ``data-selected="true"`` on the selected
  one; click its ``.node-head`` to select it. Its ``.node-count`` shows
  ``live/min``, or ``live`` when undefined (empty for an undefined level
  with sub-services but no instance of its own); ``.node-total`` shows
  ``Σ total`` for a level with sub-services.
- ``#instances[data-for="buzz/api"][data-count="N"]``: the selected
  service's instances, one ``tr.instance[data-instance-id="host-1"]`` each
  (cells ``.address``, ``.port``, ``.meta``, ``.revision``; 1,000 rows at most).
- ``#log > li`` newest first, 200 at most: events with
  ``data-kind="added|updated|removed"``, ``data-path="buzz/api/host-1"``,
  ``data-revision``, ``data-resync="true|false"``; notices with
  ``data-kind`` the notice (``disconnected``...) and class ``notice``.
"""

from discovery.dashboard._app import Dashboard, create_app, public_url
from discovery.dashboard._server import is_loopback, running, serve

__all__ = ["Dashboard", "create_app", "is_loopback", "public_url", "running", "serve"]
