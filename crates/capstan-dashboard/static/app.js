// Live updates for pages that already work without this script: new events
// are prepended to the raw events table; a new snapshot reloads <main>.
(function () {
  "use strict";
  if (!window.EventSource) return;
  var rows = document.querySelector("[data-live]");
  var main = document.getElementById("main");
  var status = document.getElementById("live-status");
  var url = "/live";
  if (rows && rows.dataset.where) url += "?where=" + encodeURIComponent(rows.dataset.where);
  var src = new EventSource(url);
  // Leaving the page ends its stream at once (a browser holds few
  // connections per host; a lingering stream would queue the next page).
  window.addEventListener("pagehide", function () { src.close(); });
  src.addEventListener("open", function () { if (status) status.textContent = "· live"; });
  src.addEventListener("error", function () { if (status) status.textContent = "· reconnecting"; });
  src.addEventListener("row", function (e) {
    if (!rows) return;
    rows.insertAdjacentHTML("afterbegin", e.data);
    if (rows.firstElementChild) rows.firstElementChild.className = "fresh";
    while (rows.rows.length > 200) rows.deleteRow(-1);
  });
  var busy = false;
  src.addEventListener("snapshot", function (e) {
    if (!main || !main.hasAttribute("data-reload-on-snapshot") || busy) return;
    if (document.body.dataset.generation === e.data) return;
    // Do not pull the page from under someone typing a token.
    var a = document.activeElement;
    if (a && main.contains(a) && (a.tagName === "INPUT" || a.tagName === "TEXTAREA")) return;
    busy = true;
    fetch(location.href, { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        busy = false;
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        if (!fresh) return;
        main.innerHTML = fresh.innerHTML;
        document.body.dataset.generation = doc.body.dataset.generation;
        var t = doc.getElementById("asof"), mine = document.getElementById("asof");
        if (t && mine) { mine.textContent = t.textContent; mine.setAttribute("datetime", t.getAttribute("datetime")); }
      })
      .catch(function () { busy = false; });
  });
})();
