// The live page: server-sent events of the app's changes, newest on top.
"use strict";
(function () {
  var script = document.getElementById("live-script");
  var rows = document.getElementById("live-rows");
  var status = document.getElementById("live-status");
  var source = new EventSource(script.dataset.url);
  function cell(tr, text) { var td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
  source.addEventListener("ready", function () {
    status.textContent = "watching"; status.dataset.state = "open";
  });
  source.addEventListener("change", function (e) {
    var c = JSON.parse(e.data);
    var empty = document.getElementById("live-empty");
    if (empty) empty.remove();
    var tr = document.createElement("tr");
    tr.className = "kind-" + c.kind; tr.dataset.user = c.user_id;
    cell(tr, c.time);
    var who = document.createElement("td"), link = document.createElement("a");
    link.href = script.dataset.url.replace(/\/live\/events$/, "/users/") + encodeURIComponent(c.user_id);
    link.textContent = c.user_id; who.appendChild(link); tr.appendChild(who);
    cell(tr, c.kind);
    cell(tr, c.change + (c.correction ? " (correction)" : ""));
    cell(tr, c.cause + (c.event ? ": " + c.event : ""));
    rows.insertBefore(tr, rows.firstChild);
    while (rows.children.length > 500) rows.removeChild(rows.lastChild);
  });
  source.onerror = function () { status.textContent = "reconnecting…"; status.dataset.state = "error"; };
})();
