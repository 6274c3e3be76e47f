/* research-mcp's MCP Apps view: the chart of a get_metrics or get_sweep answer, in the chat.
 *
 * The host renders this page in a sandboxed iframe and talks to it over postMessage with
 * JSON-RPC (ext-apps, protocol 2026-01-26): the view asks `ui/initialize`, says
 * `ui/notifications/initialized`, and is then handed the tool's input and result
 * (`ui/notifications/tool-input`, `ui/notifications/tool-result`). A get_metrics result is
 * drawn with the dashboard's own chart code; a get_sweep result becomes a table of its runs
 * with the best one marked, and, when the host proxies tool calls, the curves of the
 * ranking metric fetched with get_metrics.
 */
(function () {
  "use strict";
  var PROTOCOL = "2026-01-26";
  var nextId = 1, pending = {}, hostCaps = {};
  var root = document.getElementById("app");

  function send(msg) { window.parent.postMessage(msg, "*"); }
  function request(method, params) {
    var id = nextId++;
    send({ jsonrpc: "2.0", id: id, method: method, params: params });
    return new Promise(function (resolve, reject) { pending[id] = { resolve: resolve, reject: reject }; });
  }
  function notify(method, params) { send({ jsonrpc: "2.0", method: method, params: params || {} }); }

  function reportSize() {
    notify("ui/notifications/size-changed",
           { width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight });
  }

  function payload(result) {
    if (result && result.structuredContent) return result.structuredContent;
    var text = result && result.content && result.content[0] && result.content[0].text;
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function fmt(v) { return v === null || v === undefined ? "–" : (+v).toPrecision(4).replace(/\.?0+(e|$)/, "$1"); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function drawMetrics(answer, best) {
    var box = el("div", "charts");
    root.appendChild(box);
    var charts = window.RMCP.drawAnswer(box, answer, { best: best, height: 200, log: "auto" });
    if (!Object.keys(charts).length) box.appendChild(el("p", "muted", "no metric points yet"));
    root.dataset.drawn = Object.keys(charts).join(",");
  }

  function drawSweep(sweep) {
    root.appendChild(el("h2", null, "sweep " + sweep.name + " · " + sweep.status +
                        (sweep.metric ? " · " + sweep.metric + " (" + sweep.direction + ")" : "")));
    var table = el("table"), head = el("tr");
    ["run", "status", "params", sweep.metric || "metric"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    table.appendChild(head);
    var bestId = sweep.best ? sweep.best.run_id : null;
    (sweep.runs || []).forEach(function (r) {
      var tr = el("tr", r.id === bestId ? "best" : "");
      tr.appendChild(el("td", null, r.name + (r.id === bestId ? " ★" : "")));
      tr.appendChild(el("td", null, r.status));
      tr.appendChild(el("td", null, Object.keys(r.params || {}).map(function (k) { return k + "=" + r.params[k]; }).join(" ")));
      tr.appendChild(el("td", "num", fmt(r.metric_value)));
      table.appendChild(tr);
    });
    root.appendChild(table);
    var ids = (sweep.runs || []).map(function (r) { return r.id; }).slice(0, 20);
    if (sweep.metric && ids.length && hostCaps.serverTools) {
      request("tools/call", { name: "get_metrics", arguments: { run_ids: ids, keys: [sweep.metric] } })
        .then(function (res) { drawMetrics(payload(res), bestId); reportSize(); })
        .catch(function () { /* the table is the answer */ });
    }
  }

  function show(result) {
    root.innerHTML = "";
    var data = payload(result);
    if (!data) { root.appendChild(el("p", "muted", "nothing to draw")); }
    else if (data.progress && data.runs) drawSweep(data);
    else if (data.runs) drawMetrics(data);
    reportSize();
  }

  window.addEventListener("message", function (ev) {
    if (ev.source !== window.parent) return;
    var m = ev.data;
    if (!m || m.jsonrpc !== "2.0") return;
    if (m.id !== undefined && !m.method && pending[m.id]) {
      var p = pending[m.id];
      delete pending[m.id];
      if (m.error) p.reject(new Error(m.error.message)); else p.resolve(m.result);
    } else if (m.method === "ui/notifications/tool-result") {
      show(m.params);
    } else if (m.method === "ui/resource-teardown" && m.id !== undefined) {
      send({ jsonrpc: "2.0", id: m.id, result: {} });
    } else if (m.method === "ping" && m.id !== undefined) {
      send({ jsonrpc: "2.0", id: m.id, result: {} });
    }
  });

  request("ui/initialize", {
    protocolVersion: PROTOCOL,
    appInfo: { name: "research-mcp charts", version: "1" },
    appCapabilities: { availableDisplayModes: ["inline"] }
  }).then(function (res) {
    hostCaps = (res && res.hostCapabilities) || {};
    notify("ui/notifications/initialized");
    // Sizes are reported once the handshake is done, never before it.
    if (window.ResizeObserver) new ResizeObserver(reportSize).observe(document.body);
  });
})();
