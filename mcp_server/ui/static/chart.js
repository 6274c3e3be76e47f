/* research-mcp charts: metric series (get_metrics' answer) drawn with uPlot.
 *
 * Shared by the dashboard and the MCP Apps view (inlined there), so a curve looks the same
 * in the browser and in the agent's chat. `linesByKey` is the one place that knows the
 * shape of a get_metrics answer. Values: null = NaN/Inf (a gap in the line); a step that a
 * line lacks is spanned over. Each chart records what it last drew in `window.rmcpDrawn`
 * (tests and the bench read it).
 */
(function (root) {
  "use strict";
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
                "#ca8a04", "#db2777", "#4b5563", "#65a30d"];

  /* {key: [{id, label, points: [[step, value|null], ...]}]} from a get_metrics answer. */
  function linesByKey(answer) {
    var out = {};
    ((answer && answer.runs) || []).forEach(function (run) {
      (run.series || []).forEach(function (s) {
        (out[s.key] = out[s.key] || []).push({
          id: run.run_id, label: run.name || run.run_id, points: (s.points || []).slice()
        });
      });
    });
    return out;
  }

  /* TensorBoard-style exponential smoothing; gaps (null) and absent steps stay as they are. */
  function smooth(ys, weight) {
    if (!weight) return ys;
    var last = null, out = new Array(ys.length);
    for (var i = 0; i < ys.length; i++) {
      var v = ys[i];
      if (v === null || v === undefined) { out[i] = v; continue; }
      last = last === null ? v : last * weight + (1 - weight) * v;
      out[i] = last;
    }
    return out;
  }

  function align(lines, opts) {
    var seen = new Set();
    lines.forEach(function (l) { l.points.forEach(function (p) { seen.add(p[0]); }); });
    var xs = Array.from(seen).sort(function (a, b) { return a - b; });
    var index = new Map();
    xs.forEach(function (x, i) { index.set(x, i); });
    var data = [xs];
    lines.forEach(function (l) {
      var ys = new Array(xs.length);
      l.points.forEach(function (p) {
        var y = p[1];
        // Log axis: the values' log10 on a linear scale (uPlot's own log axis draws no ticks
        // over many decades); labels and the legend show the values themselves.
        ys[index.get(p[0])] = (y === null || (opts.log && y <= 0)) ? null : (opts.log ? Math.log10(y) : y);
      });
      data.push(smooth(ys, opts.smooth));
    });
    return data;
  }

  /* A log axis suits curves spanning many decades (a diverging run beside converging ones). */
  function spansDecades(lines) {
    var lo = Infinity, hi = -Infinity;
    for (var i = 0; i < lines.length; i++) {
      for (var j = 0; j < lines[i].points.length; j++) {
        var v = lines[i].points[j][1];
        if (v === null) continue;
        if (v <= 0) return false;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    return hi / lo > 1e4;
  }

  function axisNumber(v) {
    if (v === null || v === undefined) return "";
    var a = Math.abs(v);
    return (a >= 1e5 || (a > 0 && a < 1e-3)) ? v.toExponential(1) : String(+v.toPrecision(4));
  }
  function shown(log) {  // a plotted value as the reader knows it
    return function (v) { return v === null || v === undefined ? "" : axisNumber(log ? Math.pow(10, v) : v); };
  }

  function Chart(el, key, lines, opts) {
    this.el = el;
    this.key = key;
    this.lines = lines.map(function (l, i) {
      return { id: l.id, label: l.label, points: l.points, best: !!l.best,
               color: l.color || COLORS[i % COLORS.length], show: l.show !== false };
    });
    var log = opts && opts.log === "auto" ? spansDecades(this.lines) : !!(opts && opts.log);
    this.opts = { log: log, smooth: (opts && opts.smooth) || 0,
                  height: (opts && opts.height) || 220, title: opts && opts.title };
    this.pending = false;
    this.u = null;
    this.build();
    var self = this;
    if (root.ResizeObserver) {
      this.ro = new ResizeObserver(function () {
        if (self.u && self.el.clientWidth && Math.abs(self.u.width - self.el.clientWidth) > 4) {
          self.u.setSize({ width: self.el.clientWidth, height: self.opts.height });
        }
      });
      this.ro.observe(el);
    }
    Chart.all.push(this);
  }
  Chart.all = [];

  Chart.prototype.build = function () {
    var self = this;
    if (this.u) this.u.destroy();
    var fmt = shown(this.opts.log);
    var series = [{ label: "step" }].concat(this.lines.map(function (l) {
      return { label: l.label, stroke: l.color, width: l.best ? 3 : 1.5, show: l.show,
               spanGaps: false, points: { show: false },
               value: function (u, v) { return v === null || v === undefined ? "--" : fmt(v); } };
    }));
    var uopts = {
      width: Math.max(this.el.clientWidth || 320, 200),
      height: this.opts.height,
      title: this.opts.title,
      scales: { x: { time: false } },
      series: series,
      axes: [{}, { size: 60, values: function (u, splits) { return splits.map(fmt); } }],
      legend: { live: true },
      hooks: { draw: [function (u) { self.drawn(u); }] }
    };
    this.u = new root.uPlot(uopts, align(this.lines, this.opts), this.el);
  };

  Chart.prototype.drawn = function (u) {
    var steps = u.data[0], drawn = root.rmcpDrawn = root.rmcpDrawn || {};
    var points = 0;
    for (var i = 1; i < u.data.length; i++) {
      for (var j = 0; j < u.data[i].length; j++) if (u.data[i][j] !== undefined) points++;
    }
    drawn[this.key] = { lastStep: steps.length ? steps[steps.length - 1] : null,
                        points: points, lines: u.data.length - 1, t: Date.now() };
  };

  /* New points of one line (by run id); redrawn at most once per animation frame. */
  Chart.prototype.append = function (id, points) {
    var line = this.lines.find(function (l) { return l.id === id; });
    if (!line || !points.length) return;
    var last = line.points.length ? line.points[line.points.length - 1][0] : -Infinity;
    points.forEach(function (p) { if (p[0] > last) { line.points.push(p); last = p[0]; } });
    this.schedule();
  };

  Chart.prototype.pointCount = function () {
    return this.lines.reduce(function (n, l) { return n + l.points.length; }, 0);
  };

  Chart.prototype.schedule = function () {
    var self = this;
    if (this.pending) return;
    this.pending = true;
    var later = root.requestAnimationFrame || function (f) { return setTimeout(f, 16); };
    later(function () {
      self.pending = false;
      self.u.setData(align(self.lines, self.opts));
    });
  };

  Chart.prototype.set = function (opts) {
    if ("log" in opts) this.opts.log = !!opts.log;
    if ("smooth" in opts) this.opts.smooth = opts.smooth;
    this.build();
  };

  Chart.prototype.show = function (id, on) {
    var i = this.lines.findIndex(function (l) { return l.id === id; });
    if (i >= 0) { this.lines[i].show = on; this.u.setSeries(i + 1, { show: on }); }
  };

  Chart.prototype.destroy = function () {
    if (this.ro) this.ro.disconnect();
    if (this.u) this.u.destroy();
    Chart.all = Chart.all.filter(function (c) { return c !== this; }, this);
  };

  /* One chart per key of a get_metrics answer, each in a new box under `container`. */
  function drawAnswer(container, answer, opts) {
    var byKey = linesByKey(answer), charts = {};
    var lossFirst = function (k) { return /loss/i.test(k) ? 0 : 1; };
    Object.keys(byKey).sort(function (a, b) { return lossFirst(a) - lossFirst(b) || (a < b ? -1 : 1); })
      .forEach(function (key) {
      var box = document.createElement("div");
      box.className = "chart";
      box.dataset.key = key;
      var h = document.createElement("h3");
      h.textContent = key;
      box.appendChild(h);
      var plot = document.createElement("div");
      box.appendChild(plot);
      container.appendChild(box);
      var lines = byKey[key].map(function (l) {
        l.best = !!(opts && opts.best && l.id === opts.best);
        return l;
      });
      charts[key] = new Chart(plot, key, lines, opts);
    });
    return charts;
  }

  root.RMCP = { Chart: Chart, linesByKey: linesByKey, drawAnswer: drawAnswer, smooth: smooth,
                spansDecades: spansDecades, COLORS: COLORS };
})(window);
