/* Cash-up page: the value of each denomination, the cash and cheques counted, and the over or
   short against what the till expects, as the cashier types (the server checks it all again). */
(function () {
  "use strict";
  function pence(text) {
    var m = /^\s*£?\s*(\d{1,12})(?:\.(\d{1,2}))?\s*$/.exec(text || "");
    if (!m) { return 0; }
    return parseInt(m[1], 10) * 100 + (m[2] ? parseInt((m[2] + "0").slice(0, 2), 10) : 0);
  }
  function show(p) {
    var sign = p < 0 ? "-" : "";
    p = Math.abs(p);
    var pounds = Math.floor(p / 100), rest = p % 100;
    return sign + pounds + "." + (rest < 10 ? "0" : "") + rest;
  }
  function byId(id) { return document.getElementById(id); }
  function recalc() {
    var cash = 0, cheques = 0, rows = 0;
    document.querySelectorAll(".cash-count").forEach(function (input) {
      var n = /^\s*\d+\s*$/.test(input.value) ? parseInt(input.value, 10) : 0;
      var value = n * parseInt(input.getAttribute("data-pence"), 10);
      cash += value;
      var cell = document.querySelector('.cash-value[data-for="' + input.id + '"]');
      if (cell) { cell.textContent = value ? show(value) : ""; }
    });
    document.querySelectorAll(".cheque-amount").forEach(function (input) { cheques += pence(input.value); });
    document.querySelectorAll(".template-amount").forEach(function (input) { rows += pence(input.value); });
    var expected = parseInt(byId("till-cash").getAttribute("data-pence"), 10) +
                   parseInt(byId("till-cheques").getAttribute("data-pence"), 10) + rows;
    byId("cash-counted").textContent = show(cash);
    byId("cheques-counted").textContent = show(cheques);
    byId("expected").textContent = show(expected);
    byId("counted").textContent = show(cash + cheques);
    byId("variance").textContent = show(cash + cheques - expected);
  }
  var form = byId("cash-up-form");
  if (form) {
    form.addEventListener("input", recalc);
    recalc();
  }
}());
