/* Finance report charts (Chart.js, served locally): one per canvas.ims-report-chart, drawn from
   its data attributes (labels; datasets of {label, values} in pence). The tables beside each
   chart hold the same figures. */
(function () {
  "use strict";
  var COLOURS = ["#1d70b8", "#f47738", "#00703c", "#912b88", "#505a5f"];
  if (typeof Chart === "undefined") { return; }
  var canvases = document.querySelectorAll("canvas.ims-report-chart");
  for (var i = 0; i < canvases.length; i++) {
    var c = canvases[i];
    var labels = JSON.parse(c.getAttribute("data-labels") || "[]");
    var sets = JSON.parse(c.getAttribute("data-datasets") || "[]");
    var stacked = c.getAttribute("data-stacked") === "true";
    if (!labels.length) { continue; }
    new Chart(c, {
      type: c.getAttribute("data-type") || "bar",
      data: {labels: labels, datasets: sets.map(function (s, j) {
        return {label: s.label, data: s.values.map(function (p) { return p / 100; }),
                backgroundColor: COLOURS[j % COLOURS.length]};
      })},
      options: {responsive: true, maintainAspectRatio: false, animation: false,
                plugins: {legend: {display: sets.length > 1}},
                scales: {x: {stacked: stacked}, y: {stacked: stacked, beginAtZero: true,
                         title: {display: true, text: "£"}}}}
    });
    c.setAttribute("data-rendered", "true");
  }
}());
