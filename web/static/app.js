// Office Gateway status page: keeps the live part fresh with conditional requests (ETag / 304),
// never reloads the page, and sends the admin's forms with fetch.  Without JS the page still works.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch) return;
  var pollMs = parseInt(live.getAttribute("data-poll-ms"), 10) || 5000;
  var etag = live.getAttribute("data-etag") || "";
  var lastOk = Date.now();
  var timer = null;
  var busy = false;

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  function ago(s) {
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function tick() {
    var el = document.getElementById("updated");
    if (!el) return;
    var s = Math.max(0, Math.round((Date.now() - lastOk) / 1000));
    var n = el.querySelector(".n");
    if (n) n.textContent = ago(s);
    var stale = s > Math.max(20, 4 * pollMs / 1000);
    el.classList.toggle("stale", stale);
    el.title = stale ? "The gateway does not answer: what you see may be out of date." : "";
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  function poll() {
    if (busy) return;
    if (document.hidden) { schedule(pollMs); return; }
    busy = true;
    fetch("/fragment/status", {headers: {"If-None-Match": etag}, credentials: "same-origin", cache: "no-store"})
      .then(function (r) {
        if (r.status === 304) { lastOk = Date.now(); return null; }
        if (!r.ok) throw new Error("HTTP " + r.status);
        etag = r.headers.get("ETag") || "";
        return r.text();
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          live.innerHTML = html;
          lastOk = Date.now();
          document.dispatchEvent(new CustomEvent("gateway:updated"));
        }
        tick();
      })
      .catch(function () { tick(); })
      .then(function () { busy = false; schedule(pollMs); });
  }

  function toast(text, bad) {
    var t = document.getElementById("toast");
    if (!t) return;
    t.textContent = text;
    t.className = "flash" + (bad ? " error" : "");
    t.hidden = false;
    clearTimeout(t._h);
    t._h = setTimeout(function () { t.hidden = true; }, 5000);
  }

  // Admin forms on the status page: send with fetch, show the answer, refresh the live part at once.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.classList || !form.classList.contains("act")) return;
    ev.preventDefault();
    var data = new FormData(form);
    if (ev.submitter && ev.submitter.name) data.append(ev.submitter.name, ev.submitter.value);
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                        headers: {"Accept": "application/json", "X-CSRF-Token": csrf()}})
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) { return {ok: r.ok, j: j}; });
      })
      .then(function (res) {
        if (res.ok) toast(res.j.message || res.j.number || "Done.", false);
        else toast((res.j.error && res.j.error.message) || "That did not work.", true);
      })
      .catch(function () { toast("The gateway did not answer.", true); })
      .then(function () { buttons.forEach(function (b) { b.disabled = false; }); etag = ""; poll(); });
  });

  document.addEventListener("visibilitychange", function () { if (!document.hidden) poll(); });
  setInterval(tick, 1000);
  schedule(pollMs);
})();
