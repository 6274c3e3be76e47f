/* research-mcp dashboard: live blocks, charts and actions. No build step, no framework.
 *
 * The server renders every page; this script (1) listens to the page's one event stream,
 * (2) swaps in a fresh copy of a live block (`data-fragment`) when the stream says it
 * changed, (3) feeds new metric points to the charts, and (4) sends actions (alert
 * choices, plan status, memory toggles) with the page's CSRF token.
 */
(function () {
  "use strict";
  var body = document.body;
  var prefix = body.dataset.prefix;
  var csrf = (document.querySelector('meta[name="csrf"]') || {}).content || "";
  var page = body.dataset.page;

  function post(url, payload) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(payload)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) throw new Error(j.error || r.statusText);
        return j;
      });
    });
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  /* ---- live blocks ------------------------------------------------------------------ */
  var timers = {};
  function refresh(name) {
    var el = document.querySelector('[data-fragment="' + name + '"]');
    if (!el) return Promise.resolve();
    var u = new URL(location.href);
    u.searchParams.set("fragment", name);
    return fetch(u, { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.text().then(function (html) { el.innerHTML = html; }) : null;
    });
  }
  function soon(name, ms) {  // at most one refresh of a block per `ms`
    if (timers[name]) return;
    timers[name] = setTimeout(function () { timers[name] = null; refresh(name); }, ms);
  }
  function refreshAll() {
    document.querySelectorAll("[data-fragment]").forEach(function (el) { refresh(el.dataset.fragment); });
  }

  /* ---- actions ---------------------------------------------------------------------- */
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-action]");
    if (!b) return;
    ev.preventDefault();
    var url, payload;
    if (b.dataset.action === "resolve") {
      url = prefix + "/api/alerts/" + b.dataset.alert + "/resolve"; payload = { choice: b.dataset.choice };
    } else if (b.dataset.action === "plan") {
      url = prefix + "/api/plans/" + b.dataset.plan; payload = { status: b.dataset.status };
    } else if (b.dataset.action === "memory") {
      url = prefix + "/api/memories/" + b.dataset.memory; payload = { active: b.dataset.active === "true" };
    } else if (b.dataset.action === "compare") {
      var ids = Array.from(document.querySelectorAll("input.pick:checked")).map(function (c) { return c.value; });
      if (ids.length) location.href = prefix + "/compare?runs=" + ids.join(",");
      return;
    } else return;
    b.disabled = true;
    var status = document.getElementById("action-status");
    if (status) status.textContent = b.textContent.trim() + "…";
    post(url, payload).then(function (j) {
      if (status) status.textContent = (j.action && j.action !== "none") ? ("done: " + j.action) : "done";
      refreshAll();
    }).catch(function (e) {
      b.disabled = false;
      if (status) status.textContent = e.message;
    });
  });

  document.addEventListener("change", function (ev) {
    var t = ev.target;
    if (t.matches("form.autosubmit select")) t.form.submit();
    if (t.matches("input.pick") && page === "compare" && compareChart) compareChart.show(t.value, t.checked);
    if (t.matches("#log-scale")) t.dataset.touched = "1";
    if (t.matches("#log-scale") || t.matches("#smooth")) {
      var opts = { log: document.getElementById("log-scale").checked,
                   smooth: parseFloat(document.getElementById("smooth").value) || 0 };
      window.RMCP.Chart.all.forEach(function (c) { c.set(opts); });
    }
  });

  /* ---- charts ----------------------------------------------------------------------- */
  var charts = {}, compareChart = null;
  function chartOpts() {
    var log = document.getElementById("log-scale"), sm = document.getElementById("smooth");
    return { log: !!(log && log.checked), smooth: sm ? parseFloat(sm.value) || 0 : 0 };
  }
  function loadRunCharts() {
    var box = document.getElementById("charts");
    if (!box) return Promise.resolve();
    return getJSON(prefix + "/api/metrics?run_ids=" + box.dataset.run).then(function (answer) {
      window.RMCP.Chart.all.slice().forEach(function (c) { c.destroy(); });
      box.innerHTML = "";
      charts = window.RMCP.drawAnswer(box, answer, chartOpts());
      if (!Object.keys(charts).length) box.innerHTML = '<p class="muted">no metrics yet</p>';
    });
  }
  function loadCompareChart() {
    var box = document.getElementById("compare-chart");
    if (!box || !box.dataset.runs || !box.dataset.key) return Promise.resolve();
    var url = prefix + "/api/metrics?run_ids=" + box.dataset.runs + "&keys=" + encodeURIComponent(box.dataset.key);
    return getJSON(url).then(function (answer) {
      window.RMCP.Chart.all.slice().forEach(function (c) { c.destroy(); });
      box.innerHTML = "";
      var opts = Object.assign(chartOpts(), { best: box.dataset.best, height: 280 });
      var logBox = document.getElementById("log-scale");
      if (logBox && !logBox.dataset.touched) opts.log = "auto";  // decades apart: log axis until changed
      var drawn = window.RMCP.drawAnswer(box, answer, opts);
      compareChart = drawn[box.dataset.key] || null;
      if (logBox && compareChart) logBox.checked = compareChart.opts.log;
      charts = drawn;
    });
  }

  /* ---- the live feed ---------------------------------------------------------------- */
  var logBox = document.getElementById("log");
  var logBusy = false, logSize = 0;
  function followLog(size) {
    logSize = Math.max(logSize, size);  // a size told while a read is out is read right after it
    if (!logBox || logBusy || logSize <= +logBox.dataset.offset) return;
    logBusy = true;
    getJSON(prefix + "/api/runs/" + logBox.dataset.run + "/logs?offset=" + logBox.dataset.offset).then(function (c) {
      logBox.dataset.offset = c.end_offset;
      var atEnd = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 8;
      logBox.textContent = (logBox.textContent + c.text).split("\n").slice(-400).join("\n");
      if (atEnd) logBox.scrollTop = logBox.scrollHeight;
    }).finally(function () { logBusy = false; if (logSize > +logBox.dataset.offset) followLog(logSize); });
  }

  function onTick(msg) {
    var events = msg.events || [];
    if (events.some(function (e) { return e.kind === "alert"; })) soon("navcount", 300);
    if (page === "runs") {
      if (events.length) soon("runs", 300); else if ((msg.changed || []).length) soon("runs", 10000);
    } else if (page === "run") {
      var runId = body.dataset.watch;
      var mine = events.filter(function (e) { return e.run_id === runId; });
      if (mine.length) { soon("head", 200); soon("alerts", 200); soon("monitor", 200); }
      var pts = (msg.points || {})[runId] || {};
      var fresh = Object.keys(pts).filter(function (k) { return !charts[k]; });
      if (fresh.length || (msg.resync || []).indexOf(runId) >= 0) loadRunCharts();
      else Object.keys(pts).forEach(function (k) { charts[k].append(runId, pts[k]); });
      if ((msg.logs || {})[runId] !== undefined) followLog(msg.logs[runId]);
      if ((msg.changed || []).indexOf(runId) >= 0) soon("monitor", 15000);  // counters: now and then
    } else if (page === "compare") {
      if (events.length) soon("table", 500);
      var mineRuns = (body.dataset.watch || "").split(",");
      if ((msg.resync || []).some(function (r) { return mineRuns.indexOf(r) >= 0; })) loadCompareChart();
      else if (compareChart) {
        Object.keys(msg.points || {}).forEach(function (rid) {
          var p = msg.points[rid][compareChart.key];
          if (p) compareChart.append(rid, p);
        });
      }
      if ((msg.changed || []).length) soon("table", 10000);
    } else if (page === "alerts") {
      if (events.length) soon("alerts", 300);
    }
  }

  function onHello() {
    var dot = document.getElementById("live");
    if (dot) dot.className = "live on";
    if (!started) { started = true; load(); return; }
    refreshAll();  // back after a lost connection: what changed meanwhile is read afresh
    if (page === "run") loadRunCharts(); else if (page === "compare") loadCompareChart();
  }
  function onMessage(type, data) {
    if (type === "hello") onHello();
    else if (type === "tick") {
      var msg = JSON.parse(data);
      if (ready) onTick(msg); else backlog.push(msg);
    } else if (type === "resync") { refreshAll(); if (page === "run") loadRunCharts(); }
    else if (type === "error") {
      var dot = document.getElementById("live");
      if (dot) dot.className = "live off";
    }
  }

  /* One stream per browser where SharedWorker exists (tabs share it: see feed-worker.js);
     else one per page, for the runs it watches. */
  function connect() {
    if (window.SharedWorker && !body.dataset.ownStream) {
      try {
        var worker = new SharedWorker(prefix + "/static/feed-worker.js", { name: "research-mcp-feed" });
        worker.port.onmessage = function (m) { onMessage(m.data.type, m.data.data); };
        worker.port.start();
        worker.port.postMessage({ type: "start", url: prefix + "/api/events?runs=*" });
        window.addEventListener("pagehide", function () { worker.port.postMessage({ type: "bye" }); });
        return;
      } catch (e) { /* fall back to a stream of this page's own */ }
    }
    var es = new EventSource(prefix + "/api/events?runs=" + encodeURIComponent(body.dataset.watch || ""));
    ["hello", "tick", "resync"].forEach(function (type) {
      es.addEventListener(type, function (e) { onMessage(type, e.data); });
    });
    es.onerror = function () { onMessage("error"); };
  }

  /* Listen first, draw second: the charts are read once the stream is subscribed, and
     points stored while they load are kept and applied after (a chart ignores steps it
     already has), so no point falls between the two. */
  var ready = false, started = false, backlog = [];
  function load() {
    (page === "run" ? loadRunCharts() : page === "compare" ? loadCompareChart() : Promise.resolve())
      .catch(function (e) { console.error(e); })
      .then(function () { ready = true; backlog.splice(0).forEach(onTick); });
  }
  connect();
})();
