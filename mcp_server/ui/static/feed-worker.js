/* One event stream per browser, shared by every dashboard tab (a SharedWorker).
 *
 * Browsers open at most six HTTP/1.1 connections to a host: six tabs each holding their
 * own stream would leave none for the seventh tab's page. This worker holds the one
 * stream (every run: `runs=*`) and hands each message to every tab, which keeps what it
 * watches. A tab that joins an open stream is told `hello` at once.
 */
"use strict";
var ports = [], es = null, open = false;

function each(message) { ports.forEach(function (p) { p.postMessage(message); }); }

function start(url) {
  es = new EventSource(url);
  es.addEventListener("hello", function (e) { open = true; each({ type: "hello", data: e.data }); });
  es.addEventListener("tick", function (e) { each({ type: "tick", data: e.data }); });
  es.addEventListener("resync", function (e) { each({ type: "resync", data: e.data }); });
  es.onerror = function () { open = false; each({ type: "error" }); };
}

self.onconnect = function (event) {
  var port = event.ports[0];
  ports.push(port);
  port.onmessage = function (m) {
    if (m.data.type === "start") {
      if (!es) start(m.data.url);
      else if (open) port.postMessage({ type: "hello", data: "{}" });
    } else if (m.data.type === "bye") {
      ports = ports.filter(function (p) { return p !== port; });
    }
  };
  port.start();
};
