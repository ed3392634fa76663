// rkit dashboard: sign in, re-fetch the server-rendered panels every 2 s, plot the
// per-poll increase of counters, call actions (with the page's CSRF token).
// Plain fetch, no dependencies, no build step.
(function () {
  "use strict";
  // ?poll=<ms> (at least 250) changes the refresh period; default 2 s
  var asked = parseInt(new URLSearchParams(window.location.search).get("poll"), 10);
  var POLL_MS = asked >= 250 ? asked : 2000;
  var KEEP = Math.min(600, Math.round(300000 / POLL_MS)); // points per chart: 5 minutes
  var history = {}; // "kind/section#stat" -> [values]

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  function flash(text, isError) {
    var el = document.getElementById("flash");
    if (!el) return;
    el.textContent = text;
    el.className = isError ? "error" : "ok";
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
      body: JSON.stringify(body || {})
    });
  }

  function record() {
    var svgs = document.querySelectorAll("svg[data-spark]");
    for (var i = 0; i < svgs.length; i++) {
      var key = svgs[i].getAttribute("data-spark");
      var v = parseFloat(svgs[i].getAttribute("data-value")) || 0;
      var h = history[key] || (history[key] = []);
      h.push(v);
      if (h.length > KEEP + 1) h.shift();
      draw(svgs[i], h);
    }
  }

  function draw(svg, h) {
    var deltas = [];
    for (var i = 1; i < h.length; i++) deltas.push(Math.max(0, h[i] - h[i - 1]));
    var max = 1;
    for (var j = 0; j < deltas.length; j++) max = Math.max(max, deltas[j]);
    var pts = [];
    for (var k = 0; k < deltas.length; k++) {
      var x = 200 - (deltas.length - 1 - k) * (200 / KEEP);
      var y = 38 - (deltas[k] / max) * 34;
      pts.push(x.toFixed(1) + "," + y.toFixed(1));
    }
    var last = deltas.length ? deltas[deltas.length - 1] : 0;
    svg.innerHTML =
      '<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="' +
      pts.join(" ") + '"></polyline><text x="2" y="10" font-size="9">max ' + max +
      " · now " + last + "</text>";
  }

  function refresh() {
    var panels = document.getElementById("panels");
    if (!panels) return Promise.resolve();
    return fetch("/dashboard/panels", {credentials: "same-origin", cache: "no-store"})
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (text) {
        if (text === null) return;
        panels.innerHTML = text;
        record();
        var u = document.getElementById("updated");
        if (u) u.textContent = "updated " + new Date().toLocaleTimeString();
      })
      .catch(function (e) { flash("refresh failed: " + e.message, true); });
  }

  function act(button) {
    var question = button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) return;
    var name = button.getAttribute("data-action");
    var args = JSON.parse(button.getAttribute("data-args") || "{}");
    button.disabled = true;
    post("/dashboard/actions/" + encodeURIComponent(name), args)
      .then(function (r) {
        return r.json().then(function (body) { return {ok: r.ok, body: body}; });
      })
      .then(function (res) {
        if (res.ok) flash(name + ": " + JSON.stringify(res.body.result), false);
        else flash(name + " refused: " + JSON.stringify(res.body.detail), true);
        return refresh();
      })
      .catch(function (e) { flash(name + " failed: " + e.message, true); });
  }

  function login(form) {
    var token = form.querySelector("#token").value;
    var err = document.getElementById("login-error");
    fetch("/dashboard/login", {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({token: token})
    }).then(function (r) {
      if (r.ok) { window.location.reload(); return; }
      err.textContent = r.status === 401 ? "Wrong token." : "Sign-in refused (HTTP " + r.status + ").";
    }).catch(function (e) { err.textContent = e.message; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("login");
    if (form) {
      form.addEventListener("submit", function (ev) { ev.preventDefault(); login(form); });
      return;
    }
    document.addEventListener("click", function (ev) {
      var b = ev.target.closest ? ev.target.closest("button[data-action]") : null;
      if (b) act(b);
    });
    var out = document.getElementById("logout");
    if (out) {
      out.addEventListener("click", function () {
        post("/dashboard/logout").then(function () { window.location.reload(); });
      });
    }
    record();
    window.setInterval(refresh, POLL_MS);
  });
})();
