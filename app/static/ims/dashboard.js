/* Dashboard charts (Chart.js, served locally). Each chart has a data table beside it. */
(function () {
  "use strict";
  if (typeof Chart === "undefined") { return; }
  var canvases = document.querySelectorAll("canvas.ims-chart");
  for (var i = 0; i < canvases.length; i++) {
    var c = canvases[i];
    var labels = JSON.parse(c.getAttribute("data-labels") || "[]");
    var values = JSON.parse(c.getAttribute("data-values") || "[]").map(function (p) { return p / 100; });
    if (!labels.length) { c.style.display = "none"; continue; }
    new Chart(c, {
      type: "bar",
      data: {labels: labels, datasets: [{label: "£", data: values, backgroundColor: "#2a6ebb"}]},
      options: {animation: false, plugins: {legend: {display: false}},
                scales: {y: {beginAtZero: true}}}
    });
  }
}());
