/* Dashboard charts (Chart.js, served locally) with a data table beside each chart.
   Live: the figures are refreshed from the server every 60 seconds. */
(function () {
  "use strict";
  var charts = [];

  function draw() {
    if (typeof Chart === "undefined") { return; }
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    var canvases = document.querySelectorAll("canvas.ims-chart");
    for (var i = 0; i < canvases.length; i++) {
      var c = canvases[i];
      var labels = JSON.parse(c.getAttribute("data-labels") || "[]");
      var values = JSON.parse(c.getAttribute("data-values") || "[]").map(function (p) { return p / 100; });
      if (!labels.length) { c.style.display = "none"; continue; }
      charts.push(new Chart(c, {
        type: "bar",
        data: {labels: labels, datasets: [{label: "£", data: values, backgroundColor: "#2a6ebb"}]},
        options: {animation: false, plugins: {legend: {display: false}},
                  scales: {y: {beginAtZero: true}}}
      }));
    }
  }

  function refresh() {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", window.location.pathname);
    xhr.onload = function () {
      if (xhr.status !== 200) { return; }
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var fresh = doc.getElementById("dashboard");
      var current = document.getElementById("dashboard");
      if (fresh && current) {  /* move the parsed nodes across: no HTML string is re-parsed */
        current.replaceChildren.apply(current, Array.prototype.slice.call(fresh.childNodes));
        draw();
      }
    };
    xhr.send();
  }

  draw();
  if (document.getElementById("dashboard")) { window.setInterval(refresh, 60000); }
}());
