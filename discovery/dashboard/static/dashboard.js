// The dashboard page: applies the server's snapshot, events, tree and state messages (see discovery/dashboard/__init__.py).
// Plain JavaScript, no framework, no build step. The tree is updated in place, node by node, keyed by path; the
// instance table is drawn for the selected service only, at most once per animation frame; the log keeps MAX_LOG rows.
"use strict";

(() => {
  const MAX_LOG = 200;
  const MAX_ROWS = 1000;
  const RETRY_MS = 2000;
  const STATE_TEXT = {
    disconnected: "Disconnected from the registry: reconnecting. The view may be stale; no change is lost meanwhile.",
    resyncing: "Resyncing: the registry is being listed again; the differences follow.",
    broken: "The watch gave up: this view is stale. Restart the dashboard.",
  };

  const $ = (id) => document.getElementById(id);
  const model = {
    services: new Map(), // service -> Map(id -> instance)
    nodes: new Map(), // path -> the tree node's elements
    selected: null,
    lastId: "",
  };
  let instancesScheduled = false;
  let source = null;

  function span(className, text) {
    const element = document.createElement("span");
    element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function clock(time) {
    return typeof time === "number" ? new Date(time * 1000).toLocaleTimeString() : "";
  }

  // -- header ---------------------------------------------------------------

  function setRevision(revision) {
    if (typeof revision !== "number") return;
    const element = $("revision");
    if (element.dataset.revision !== String(revision)) {
      element.dataset.revision = String(revision);
      element.textContent = String(revision);
    }
  }

  function setWatchState(state, reason) {
    const element = $("watch-state");
    element.dataset.state = state;
    element.textContent = state;
    const banner = $("state-banner");
    banner.dataset.state = state;
    if (state === "connected") {
      banner.hidden = true;
      banner.textContent = "";
    } else {
      banner.hidden = false;
      banner.textContent = (STATE_TEXT[state] || state) + (reason ? ` (${reason})` : "");
    }
  }

  function setStream(state) {
    document.body.dataset.stream = state;
    $("stream-state").textContent = state === "open" ? "live" : `page ${state}…`;
  }

  // -- the tree -------------------------------------------------------------

  function createNode(path) {
    const element = document.createElement("div");
    element.className = "node";
    element.dataset.service = path;
    const head = document.createElement("div");
    head.className = "node-head";
    head.tabIndex = 0;
    head.setAttribute("role", "button");
    const parts = {
      name: span("node-name"),
      count: span("node-count"),
      total: span("node-total"),
      reason: span("node-reason"),
    };
    head.append(parts.name, parts.count, parts.total, parts.reason);
    const children = document.createElement("div");
    children.className = "node-children";
    element.append(head, children);
    return { element, children, key: "", ...parts };
  }

  function updateNode(entry, node, isRoot) {
    const key = [node.name, node.health, node.reason, node.instances, node.min, node.total, node.children.length].join("|");
    if (key === entry.key) return;
    entry.key = key;
    const data = entry.element.dataset;
    data.health = node.health;
    data.reason = node.reason;
    data.instances = String(node.instances);
    data.min = node.min === null ? "" : String(node.min);
    data.total = String(node.total);
    entry.name.textContent = isRoot ? node.path || "/" : node.name;
    let count = "";
    if (node.min !== null) count = `${node.instances}/${node.min}`;
    else if (node.instances > 0 || node.children.length === 0) count = String(node.instances);
    entry.count.textContent = count;
    entry.total.textContent = node.children.length ? `Σ ${node.total}` : "";
    entry.reason.textContent = node.health === "up" ? "" : node.reason;
  }

  function placeChildren(container, nodes, seen, isRoot) {
    let previous = null;
    for (const node of nodes) {
      seen.add(node.path);
      let entry = model.nodes.get(node.path);
      if (!entry) {
        entry = createNode(node.path);
        model.nodes.set(node.path, entry);
      }
      updateNode(entry, node, isRoot);
      const expected = previous ? previous.nextSibling : container.firstChild;
      if (expected !== entry.element) container.insertBefore(entry.element, expected);
      previous = entry.element;
      placeChildren(entry.children, node.children, seen, false);
    }
  }

  function renderTree(root) {
    const seen = new Set();
    placeChildren($("tree"), [root], seen, true);
    for (const [path, entry] of model.nodes) {
      if (!seen.has(path)) {
        entry.element.remove();
        model.nodes.delete(path);
      }
    }
    markSelected();
  }

  function markSelected() {
    for (const [path, entry] of model.nodes) {
      const selected = path === model.selected;
      if ((entry.element.dataset.selected === "true") !== selected) {
        if (selected) entry.element.dataset.selected = "true";
        else delete entry.element.dataset.selected;
      }
    }
  }

  function select(path) {
    model.selected = path;
    markSelected();
    scheduleInstances();
  }

  // -- instances ------------------------------------------------------------

  function applyEvent(event) {
    let members = model.services.get(event.service);
    if (event.kind === "removed") {
      if (members) {
        members.delete(event.id);
        if (members.size === 0) model.services.delete(event.service);
      }
    } else if (event.instance) {
      if (!members) {
        members = new Map();
        model.services.set(event.service, members);
      }
      members.set(event.id, event.instance);
    }
  }

  function metaText(meta) {
    return Object.entries(meta || {})
      .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
      .join(" ");
  }

  function instanceRow(instance) {
    const row = document.createElement("tr");
    row.className = "instance";
    row.dataset.instanceId = instance.id;
    const cells = [
      ["id", instance.id],
      ["address", instance.address ?? ""],
      ["port", instance.port ?? ""],
      ["meta", metaText(instance.meta)],
      ["revision", instance.revision],
    ];
    for (const [className, text] of cells) {
      const cell = document.createElement("td");
      cell.className = className;
      cell.textContent = String(text);
      row.append(cell);
    }
    return row;
  }

  function scheduleInstances() {
    if (instancesScheduled) return;
    instancesScheduled = true;
    requestAnimationFrame(renderInstances);
  }

  function renderInstances() {
    instancesScheduled = false;
    const panel = $("instances");
    const table = panel.querySelector("table");
    const rows = $("instance-rows");
    const more = $("instances-more");
    const service = model.selected;
    if (service === null) {
      panel.dataset.for = "";
      panel.dataset.count = "0";
      $("instances-hint").hidden = false;
      table.hidden = true;
      more.hidden = true;
      rows.replaceChildren();
      return;
    }
    const members = model.services.get(service);
    const list = members ? [...members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)) : [];
    panel.dataset.for = service;
    panel.dataset.count = String(list.length);
    $("instances-title").textContent = `${service || "/"}: ${list.length} instance${list.length === 1 ? "" : "s"}`;
    $("instances-hint").hidden = list.length > 0;
    $("instances-hint").textContent = list.length ? "" : "No live instance of exactly this service.";
    table.hidden = list.length === 0;
    const fragment = document.createDocumentFragment();
    for (const instance of list.slice(0, MAX_ROWS)) fragment.append(instanceRow(instance));
    rows.replaceChildren(fragment);
    more.hidden = list.length <= MAX_ROWS;
    more.textContent = list.length > MAX_ROWS ? `… and ${list.length - MAX_ROWS} more` : "";
  }

  // -- the log --------------------------------------------------------------

  function logRow(entry) {
    const row = document.createElement("li");
    row.dataset.kind = entry.kind;
    row.dataset.revision = String(entry.revision);
    row.append(span("log-time", clock(entry.time)), span("log-kind", entry.kind));
    if ("service" in entry) {
      row.className = "event";
      row.dataset.path = `${entry.service}/${entry.id}`;
      row.dataset.resync = entry.resync ? "true" : "false";
      row.append(span("log-service", entry.service), span("log-id", entry.id), span("log-rev", `rev ${entry.revision}`));
      if (entry.resync) row.append(span("log-flag", "resync"));
      if (entry.kind === "removed" && typeof entry.expired === "boolean") {
        row.append(span("log-cause", entry.expired ? "expired" : "deleted"));
      }
    } else {
      row.className = "notice";
      const reason = span("log-reason", entry.reason || "");
      reason.title = entry.reason || "";
      row.append(reason, span("log-rev", `rev ${entry.revision}`));
    }
    return row;
  }

  function addToLog(entries) {
    // entries: oldest first; the log shows newest first.
    const log = $("log");
    const fragment = document.createDocumentFragment();
    const first = Math.max(0, entries.length - MAX_LOG);
    for (let index = entries.length - 1; index >= first; index--) fragment.append(logRow(entries[index]));
    log.prepend(fragment);
    while (log.childElementCount > MAX_LOG) log.lastElementChild.remove();
  }

  // -- messages -------------------------------------------------------------

  const HANDLERS = {
    snapshot(data) {
      model.services = new Map();
      for (const instance of data.instances) applyEvent({ kind: "added", service: instance.service, id: instance.id, instance });
      $("backend").textContent = data.backend;
      $("url").textContent = data.url;
      $("prefix").textContent = data.prefix || "/";
      document.title = `discovery: ${data.prefix || "/"} on ${data.backend}`;
      renderTree(data.tree);
      $("log").replaceChildren();
      addToLog([...data.log].reverse());
      setWatchState(data.state, data.reason);
      setRevision(data.revision);
      scheduleInstances();
      document.body.dataset.ready = "true";
    },
    events(data) {
      let selectedChanged = false;
      for (const event of data.events) {
        applyEvent(event);
        event.time = data.time;
        if (event.service === model.selected) selectedChanged = true;
      }
      addToLog(data.events);
      setRevision(data.revision);
      if (selectedChanged) scheduleInstances();
    },
    tree(data) {
      renderTree(data.tree);
      setRevision(data.revision);
    },
    state(data) {
      setWatchState(data.state, data.reason);
      addToLog([{ kind: data.notice, reason: data.reason, revision: data.revision, time: data.time }]);
      setRevision(data.revision);
    },
  };

  function connect() {
    const url = model.lastId ? `events?last_event_id=${encodeURIComponent(model.lastId)}` : "events";
    const stream = new EventSource(url);
    source = stream;
    for (const type of Object.keys(HANDLERS)) {
      stream.addEventListener(type, (message) => {
        if (stream !== source) return;
        try {
          HANDLERS[type](JSON.parse(message.data));
          if (message.lastEventId) model.lastId = message.lastEventId;
        } catch (error) {
          // Never show a half-applied state: start again from a fresh snapshot.
          console.error("dashboard: could not apply a message; reloading the snapshot", error);
          model.lastId = "";
          stream.close();
          connect();
        }
      });
    }
    stream.onopen = () => setStream("open");
    stream.onerror = () => {
      setStream("reconnecting");
      if (stream.readyState === EventSource.CLOSED && stream === source) {
        // The browser gave up (an HTTP error): retry ourselves, resuming from the last message applied.
        setTimeout(() => {
          if (stream === source) connect();
        }, RETRY_MS);
      }
    };
  }

  function onActivate(event) {
    if (event.type === "keydown" && event.key !== "Enter" && event.key !== " ") return;
    const head = event.target.closest(".node-head");
    if (!head) return;
    event.preventDefault();
    select(head.parentElement.dataset.service);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("tree").addEventListener("click", onActivate);
    $("tree").addEventListener("keydown", onActivate);
    setStream("connecting");
    connect();
  });
})();
