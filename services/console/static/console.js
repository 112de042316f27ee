// Draws every <div class="chart" data-figure="ID"> from <script id="figure-ID"> (plotly.min.js).
"use strict";
(function () {
  function draw() {
    document.querySelectorAll("div.chart[data-figure]").forEach(function (div) {
      var source = document.getElementById("figure-" + div.dataset.figure);
      if (!source || !window.Plotly) return;
      var fig = JSON.parse(source.textContent);
      window.Plotly.newPlot(div, fig.data, fig.layout, { displaylogo: false, responsive: true })
        .then(function () { div.dataset.drawn = "yes"; });
    });
  }
  window.cohortflow = {
    csrf: function () {
      var meta = document.querySelector('meta[name="csrf-token"]');
      return meta ? meta.content : "";
    },
    postJson: function (url, body) {
      return fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": window.cohortflow.csrf() },
        body: JSON.stringify(body),
      }).then(function (r) {
        return r.json().then(function (data) { return { status: r.status, data: data }; });
      });
    },
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
