// TinyKV-rs dashboard: renders this node's view of the cluster from its own endpoints.
//
// - every 2 s: GET /v1/admin/stores and GET /v1/admin/regions -> the stores table, the
//   key-range map and the regions table;
// - every 1 s: GET /metrics -> requests per second by route group, from the counters
//   tinykv_http_requests_total{route,status}, with a sparkline of the last 60 samples.
//
// Authentication: when the cluster has it on, the admin endpoints answer 401 without a
// token; the page then shows a token form (#token-form). The token is kept in
// sessionStorage (this tab only, never localStorage) and sent as `Authorization: Bearer`
// with every request; "Forget token" removes it and reloads the page. A 403 means the
// token lacks the admin role. The panel's state is in #auth-panel[data-auth-state]: open,
// token, needed, refused or lacking.
//
// Plain JavaScript, no dependencies, no build step. Rendered elements carry
// data-store-id, data-region-id and data-route attributes (used by .ci/ui.sh).
"use strict";

(() => {
  const CLUSTER_REFRESH_MS = 2000;
  const METRICS_REFRESH_MS = 1000;
  const REQUEST_TIMEOUT_MS = 5000;
  const HISTORY = 60;
  const PALETTE_SIZE = 8;
  // The route groups of src/metrics.rs, in display order.
  const ROUTE_GROUPS = ["kv_get", "kv_put", "kv_delete", "kv_scan", "txn", "admin", "internal", "other"];
  const SVG_NS = "http://www.w3.org/2000/svg";
  // The sessionStorage key of the token.
  const TOKEN_KEY = "tinykv.dashboard.token";

  const $ = (id) => document.getElementById(id);

  /** Creates an element with attributes (`class`, `data-*`, ...) and children. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null && value !== false) {
        node.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // ------------------------------------------------------------------ token

  // Where the token lives when sessionStorage cannot be used (storage disabled): this
  // page's memory, gone on reload.
  let memoryToken = null;

  /** The token kept for this tab, or null. */
  function storedToken() {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY) || memoryToken;
    } catch (_) {
      return memoryToken;
    }
  }

  function storeToken(token) {
    try {
      window.sessionStorage.setItem(TOKEN_KEY, token);
      memoryToken = null;
    } catch (_) {
      memoryToken = token;
    }
  }

  function forgetToken() {
    memoryToken = null;
    try {
      window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Nothing stored there.
    }
  }

  /**
   * GET `path` as JSON (or text), with the tab's token if it has one, failing on a
   * non-2xx answer or after a timeout. The error of a refusal carries `status`, the
   * server's `code`, and `withToken` (whether the request carried a token).
   */
  async function get(path, asText) {
    const options = { cache: "no-store" };
    const token = storedToken();
    if (token) {
      options.headers = { Authorization: `Bearer ${token}` };
    }
    if (typeof AbortSignal !== "undefined" && AbortSignal.timeout) {
      options.signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    }
    const response = await fetch(path, options);
    if (!response.ok) {
      let detail = "";
      let code = null;
      try {
        const body = await response.json();
        if (body && body.error) {
          code = body.error.code;
          detail = `: ${body.error.code} (${body.error.message})`;
        }
      } catch (_) {
        // Not a JSON error: the status says enough.
      }
      const error = new Error(`GET ${path} answered ${response.status}${detail}`);
      error.status = response.status;
      error.code = code;
      error.withToken = Boolean(token);
      throw error;
    }
    return asText ? response.text() : response.json();
  }

  /**
   * Shows what authentication asks of the user, after the admin requests' outcomes
   * (`results`, as Promise.allSettled gives them): nothing while it is off, the token
   * form on a 401, "lacks the admin role" on a 403, and whenever a token is kept, the
   * note with its "Forget token" link.
   */
  function renderAuth(results) {
    const errors = results.filter((r) => r.status === "rejected").map((r) => r.reason);
    const unauthenticated = errors.find((e) => isAuthRefusal(e) && e.status === 401);
    const denied = errors.find((e) => isAuthRefusal(e) && e.status === 403);
    let state;
    let message = null;
    if (unauthenticated && unauthenticated.withToken) {
      state = "refused";
      message = "The cluster refused the token: it does not know it, or it was revoked. " +
        "Give another one (admin role).";
    } else if (unauthenticated) {
      state = "needed";
      message = "Authentication is on: give an API token with the admin role to see the " +
        "stores and regions.";
    } else if (denied) {
      state = "lacking";
      message = "This token lacks the admin role: give another one to see the stores and regions.";
    } else if (errors.length === results.length) {
      return; // Nothing answered: nothing learnt about authentication.
    } else {
      state = storedToken() ? "token" : "open";
    }
    const panel = $("auth-panel");
    panel.dataset.authState = state;
    const line = $("auth-message");
    if (message) {
      if (line.textContent !== message) line.textContent = message;
      line.hidden = false;
    } else {
      line.hidden = true;
      line.textContent = "";
    }
    const asking = state === "needed" || state === "refused" || state === "lacking";
    const form = $("token-form");
    if (form.hidden === asking) {
      form.hidden = !asking;
      if (asking) $("token-input").focus();
    }
    $("token-note").hidden = !storedToken();
    panel.hidden = state === "open";
  }

  /** Whether `error` is a refusal by authentication (401, or 403 permission_denied). */
  function isAuthRefusal(error) {
    return Boolean(error) &&
      (error.status === 401 || (error.status === 403 && error.code === "permission_denied"));
  }

  /** Shows (or, with null, hides) a section's error line. */
  function showError(id, error) {
    const line = $(id);
    if (error) {
      const text = isAuthRefusal(error)
        ? `Not refreshed: ${error.message}. This needs a token with the admin role (see above).`
        : `Could not refresh: ${error.message || error}. Showing the last data.`;
      if (line.textContent !== text) line.textContent = text;
      line.hidden = false;
    } else if (!line.hidden) {
      line.hidden = true;
      line.textContent = "";
    }
  }

  /**
   * Runs `task` now and then `ms` after each run ends (never two at once). The returned
   * `now()` runs it at once (or right after the run in progress).
   */
  function every(ms, task) {
    let timer = null;
    let running = false;
    let again = false;
    const run = async () => {
      clearTimeout(timer);
      running = true;
      try {
        await task();
      } finally {
        running = false;
        if (again) {
          again = false;
          run();
        } else {
          timer = setTimeout(run, ms);
        }
      }
    };
    run();
    return {
      now() {
        if (running) {
          again = true;
        } else {
          run();
        }
      },
    };
  }

  // ------------------------------------------------------------------ keys

  /** The bytes of a percent-encoded key, as the admin API shows keys. */
  function keyBytes(encoded) {
    const bytes = [];
    for (let i = 0; i < encoded.length; i++) {
      const hex = encoded.slice(i + 1, i + 3);
      if (encoded[i] === "%" && /^[0-9A-Fa-f]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16));
        i += 2;
      } else {
        bytes.push(encoded.charCodeAt(i) & 0xff);
      }
    }
    return bytes;
  }

  /** Byte-wise order of two percent-encoded keys. */
  function compareKeys(a, b) {
    const x = keyBytes(a);
    const y = keyBytes(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      if (x[i] !== y[i]) return x[i] - y[i];
    }
    return x.length - y.length;
  }

  /** A region boundary for display: the empty key is −∞ as a start and +∞ as an end. */
  function boundary(key, isEnd) {
    if (key === "") {
      return el("span", { class: "unbounded", title: isEnd ? "the end of the key space" : "the first key" },
        isEnd ? "+∞" : "−∞");
    }
    return el("code", { class: "key" }, key);
  }

  function range(region) {
    return el("span", { class: "range" }, "[", boundary(region.start_key, false), ", ",
      boundary(region.end_key, true), ")");
  }

  // ------------------------------------------------------------------ formatting

  /** The colour class of a store: a palette of PALETTE_SIZE, by store id. */
  function colourClass(storeId) {
    return storeId === null || storeId === undefined
      ? "colour-none"
      : `colour-${(storeId - 1 + PALETTE_SIZE) % PALETTE_SIZE}`;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit++;
    }
    return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
  }

  const orDash = (v) => (v === null || v === undefined ? "—" : String(v));

  // ------------------------------------------------------------------ stores and regions

  let knownStores = [];

  function renderNodeLine(storeList) {
    const me = storeList.stores.find((s) => s.local);
    const at = me ? ` at ${me.http_addr}` : "";
    const time = new Date().toLocaleTimeString();
    $("node-line").replaceChildren("Served by ",
      el("strong", { "data-local-store-id": storeList.store_id }, `store ${storeList.store_id}`),
      `${at} · ${storeList.stores.length} stores in the address book · updated ${time}`);
  }

  function renderStores(storeList) {
    const rows = storeList.stores.map((store) => {
      const status = store.up
        ? el("span", { class: "status up" }, el("span", { class: "dot", "aria-hidden": "true" }), "up")
        : el("span", { class: "status down", title: store.probe_error || "" },
          el("span", { class: "dot", "aria-hidden": "true" }), "down");
      const httpLink = store.local
        ? el("span", {}, store.http_addr, " ", el("span", { class: "badge" }, "this node"))
        : el("a", { href: `http://${store.http_addr}/ui` }, store.http_addr);
      return el("tr", { "data-store-id": store.id, "data-store-up": String(store.up) },
        el("th", { scope: "row" },
          el("span", { class: `swatch ${colourClass(store.id)}`, "aria-hidden": "true" }),
          `Store ${store.id}`),
        el("td", {}, status,
          store.up || !store.probe_error ? null : el("div", { class: "detail" }, store.probe_error)),
        el("td", {}, el("code", {}, store.raft_addr)),
        el("td", {}, httpLink),
        el("td", { class: "num" }, store.region_count),
        el("td", { class: "num" }, store.leader_count));
    });
    $("stores-body").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: 6, class: "empty" }, "The address book is empty."))]));
    knownStores = storeList.stores.map((s) => s.id);
  }

  function leaderStore(region) {
    return region.leader ? region.leader.store_id : null;
  }

  function replicaStores(region) {
    return region.peers.map((p) => p.store_id).sort((a, b) => a - b);
  }

  /** A segment of the map for a range no region of this node covers. */
  function gapSegment(start, end) {
    return el("li", { class: "segment gap", "data-gap": "" },
      el("span", { class: "seg-title" }, "No local region"),
      el("span", { class: "seg-range" }, range({ start_key: start, end_key: end })));
  }

  function renderMap(regions) {
    const segments = [];
    let expected = ""; // where the next region should start
    let done = false;
    for (const region of regions) {
      if (!done && compareKeys(region.start_key, expected) > 0) {
        segments.push(gapSegment(expected, region.start_key));
      }
      const leader = leaderStore(region);
      const replicas = replicaStores(region);
      const label = `Region ${region.id}: keys ${region.start_key || "−∞"} to ${region.end_key || "+∞"}, ` +
        `leader on ${leader === null ? "no known store" : `store ${leader}`}, ` +
        `replicas on stores ${replicas.join(", ")}`;
      segments.push(el("li", {
        class: `segment ${colourClass(leader)}`,
        "data-region-id": region.id,
        "data-leader-store": leader === null ? "none" : leader,
        title: label,
      },
      el("span", { class: "seg-title" }, `Region ${region.id}`),
      el("span", { class: "seg-range" }, range(region)),
      el("span", { class: "seg-leader" }, leader === null ? "leader: unknown" : `leader: store ${leader}`),
      el("span", { class: "seg-peers" }, `replicas: ${replicas.map((s) => `s${s}`).join(" ")}`)));
      if (region.end_key === "") {
        done = true;
      } else {
        expected = region.end_key;
      }
    }
    if (!done) segments.push(gapSegment(expected, ""));
    $("region-map").replaceChildren(...segments);

    const leaders = new Set(knownStores);
    for (const region of regions) leaders.add(leaderStore(region));
    const legend = [...leaders].sort((a, b) => (a === null) - (b === null) || a - b).map((id) =>
      el("li", {}, el("span", { class: `swatch ${colourClass(id)}`, "aria-hidden": "true" }),
        id === null ? "no known leader" : `leader on store ${id}`));
    $("legend").replaceChildren(...legend);
  }

  function renderRegions(regions) {
    const rows = regions.map((region) => {
      const leader = region.leader;
      return el("tr", { "data-region-id": region.id },
        el("th", { scope: "row" }, `Region ${region.id}`),
        el("td", {}, range(region)),
        el("td", { class: "nowrap" }, `conf_ver ${region.epoch.conf_ver} · version ${region.epoch.version}`),
        el("td", {}, el("ul", { class: "peers" },
          region.peers.map((p) => el("li", {}, `store ${p.store_id}: peer ${p.id}`)))),
        el("td", { class: "nowrap" }, leader
          ? el("span", {}, el("span", { class: `swatch ${colourClass(leader.store_id)}`, "aria-hidden": "true" }),
            `store ${leader.store_id} (peer ${leader.id})`)
          : "unknown"),
        el("td", { class: "num" }, orDash(region.term)),
        el("td", { class: "num" }, orDash(region.applied_index)),
        el("td", { class: "num" }, bytes(region.approximate_size)));
    });
    $("regions-body").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: 8, class: "empty" }, "This node holds no region."))]));
  }

  /** Garbage collection's safe point: a timestamp (ms since the epoch << 18). */
  function renderSafePoint(answer) {
    const line = $("gc-line");
    const ts = answer.safe_point;
    if (!ts) {
      line.replaceChildren("Garbage collection: no safe point yet (nothing collected).");
    } else {
      const ms = Math.floor(ts / 262144);
      const ago = Math.round((Date.now() - ms) / 60000);
      line.replaceChildren("Garbage collection's safe point: ",
        el("strong", { "data-safe-point": String(ts) }, String(ts)),
        ` (${new Date(ms).toLocaleString()}, ${ago} min ago): versions older than it are collected.`);
    }
    line.hidden = false;
  }

  async function refreshCluster() {
    const [stores, regions, safePoint] = await Promise.allSettled([
      get("/v1/admin/stores"),
      get("/v1/admin/regions"),
      get("/v1/txn/safe-point"),
    ]);
    if (safePoint.status === "fulfilled") renderSafePoint(safePoint.value);
    renderAuth([stores, regions]);
    if (stores.status === "fulfilled") {
      renderNodeLine(stores.value);
      renderStores(stores.value);
      showError("stores-error", null);
    } else {
      showError("stores-error", stores.reason);
    }
    if (regions.status === "fulfilled") {
      const list = regions.value.regions.slice().sort((a, b) =>
        compareKeys(a.start_key, b.start_key) || a.id - b.id);
      renderMap(list);
      renderRegions(list);
      showError("regions-error", null);
    } else {
      showError("regions-error", regions.reason);
    }
  }

  // ------------------------------------------------------------------ throughput

  /** Sums tinykv_http_requests_total over status classes: route group -> count. */
  function parseRequestCounters(text) {
    const totals = new Map();
    const line = /^tinykv_http_requests_total\{([^}]*)\}\s+(\S+)/;
    const label = /(\w+)="((?:[^"\\]|\\.)*)"/g;
    for (const row of text.split("\n")) {
      const match = line.exec(row);
      if (!match) continue;
      let route = null;
      for (const [, name, value] of match[1].matchAll(label)) {
        if (name === "route") route = value;
      }
      const count = Number(match[2]);
      if (route === null || !Number.isFinite(count)) continue;
      totals.set(route, (totals.get(route) || 0) + count);
    }
    return totals;
  }

  let previous = null; // { at: ms, totals: Map }
  const history = new Map(); // route group -> ops/s samples, oldest first

  function sparkline(samples, route) {
    const width = 180;
    const height = 32;
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("class", "sparkline");
    svg.setAttribute("role", "img");
    const peak = Math.max(0, ...samples);
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = `${route}: ${samples.length} samples, peak ${peak.toFixed(1)} ops/s`;
    svg.setAttribute("aria-label", title.textContent);
    svg.append(title);
    const baseline = document.createElementNS(SVG_NS, "line");
    for (const [k, v] of Object.entries({ x1: 0, y1: height - 1, x2: width, y2: height - 1 })) {
      baseline.setAttribute(k, v);
    }
    baseline.setAttribute("class", "baseline");
    svg.append(baseline);
    if (samples.length > 0) {
      const step = width / (HISTORY - 1);
      const x0 = width - step * (samples.length - 1);
      // At least 1 ops/s full height, so that a trickle does not look like a flood.
      const scale = (height - 4) / Math.max(peak, 1);
      const points = samples.map((v, i) =>
        `${(x0 + i * step).toFixed(1)},${(height - 2 - v * scale).toFixed(1)}`);
      const area = document.createElementNS(SVG_NS, "polygon");
      area.setAttribute("points",
        `${x0.toFixed(1)},${height - 1} ${points.join(" ")} ${width},${height - 1}`);
      area.setAttribute("class", "area");
      const line = document.createElementNS(SVG_NS, "polyline");
      line.setAttribute("points", points.join(" "));
      line.setAttribute("class", "line");
      svg.append(area, line);
    }
    return svg;
  }

  function renderThroughput(totals) {
    const routes = ROUTE_GROUPS.concat([...totals.keys()].filter((r) => !ROUTE_GROUPS.includes(r)).sort());
    const rows = routes.map((route) => {
      const samples = history.get(route) || [];
      const rate = samples.length ? samples[samples.length - 1] : null;
      return el("tr", { "data-route": route },
        el("th", { scope: "row" }, el("code", {}, route)),
        el("td", { class: "num" }, rate === null ? "—" : rate.toFixed(1)),
        el("td", {}, sparkline(samples, route)),
        el("td", { class: "num" }, String(totals.get(route) || 0)));
    });
    $("throughput-body").replaceChildren(...rows);
  }

  async function refreshMetrics() {
    let text;
    try {
      text = await get("/metrics", true);
    } catch (error) {
      showError("throughput-error", error);
      return;
    }
    showError("throughput-error", null);
    const now = performance.now();
    const totals = parseRequestCounters(text);
    if (previous) {
      const seconds = Math.max((now - previous.at) / 1000, 0.001);
      for (const [route, count] of totals) {
        const before = previous.totals.get(route);
        // A counter that went down restarted with the node: no rate for this sample.
        const rate = before === undefined || count < before ? 0 : (count - before) / seconds;
        const samples = history.get(route) || [];
        samples.push(rate);
        if (samples.length > HISTORY) samples.shift();
        history.set(route, samples);
      }
    }
    previous = { at: now, totals };
    renderThroughput(totals);
  }

  function start() {
    const cluster = every(CLUSTER_REFRESH_MS, refreshCluster);
    every(METRICS_REFRESH_MS, refreshMetrics);

    $("token-form").addEventListener("submit", (event) => {
      // Never a navigation (the page's CSP has form-action 'none' anyway).
      event.preventDefault();
      const input = $("token-input");
      const token = input.value.trim();
      input.value = "";
      if (!token) return;
      storeToken(token);
      $("token-note").hidden = false;
      cluster.now();
    });
    $("forget-token").addEventListener("click", (event) => {
      event.preventDefault();
      forgetToken();
      // Start afresh: nothing read with the forgotten token stays on the page.
      window.location.reload();
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
