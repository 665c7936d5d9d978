/* Receipt and journal forms: inline validation as each field is left, add/remove lines, total. */
(function () {
  "use strict";
  var form = document.getElementById("receipt-form") || document.getElementById("lines-form");
  if (!form) { return; }
  var url = form.getAttribute("data-validate-url");
  var tbody = form.querySelector("tbody");
  var csrf = form.querySelector("input[name=csrf_token]");
  var methodSel = document.getElementById("payment_method_code");

  function rowOf(el) { while (el && el.tagName !== "TR") { el = el.parentNode; } return el; }

  function setMsg(row, field, messages, ok) {
    var span = row.querySelector(".line-msg-" + field);
    if (!span) { return; }
    var cell = span.parentNode;
    span.textContent = messages.join(" ");
    span.className = "line-msg line-msg-" + field + " help-block" + (messages.length ? " ims-error" : "");
    if (messages.length) { cell.classList.add("has-error"); } else { cell.classList.remove("has-error"); }
    if (ok) { cell.classList.add("has-success"); } else { cell.classList.remove("has-success"); }
  }

  function validateRow(row) {
    if (!url) { return; }
    var fund = row.querySelector(".line-fund");
    var ref = row.querySelector(".line-reference");
    var amount = row.querySelector(".line-amount");
    var vat = row.querySelector(".line-vat");
    if (!fund || !fund.value) { return; }
    var body = {fund_code: fund.value, account_reference: ref ? ref.value : "",
                amount: amount ? amount.value : "", vat_code: vat ? vat.value : "",
                payment_method_code: methodSel ? methodSel.value : ""};
    /* Only the row's latest check may speak: the fund's check (sent as the fund is chosen, with
       no reference yet) can come back after the reference's and would wipe its message. */
    var seq = row.imsCheck = (row.imsCheck || 0) + 1;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("Content-Type", "application/json");
    if (csrf) { xhr.setRequestHeader("X-CSRFToken", csrf.value); }
    xhr.onload = function () {
      if (xhr.status !== 200 || seq !== row.imsCheck) { return; }
      var data = JSON.parse(xhr.responseText);
      var errs = data.errors || {};
      setMsg(row, "fund_code", errs.fund_code || [], false);
      var refMsgs = (errs.account_reference || []).slice();
      if (!refMsgs.length && data.account_name) { refMsgs = []; }
      setMsg(row, "account_reference", refMsgs, ref && ref.value && !refMsgs.length);
      var refSpan = row.querySelector(".line-msg-account_reference");
      if (refSpan && !refMsgs.length && ref && ref.value) {
        refSpan.textContent = data.account_name ? "\u2713 " + data.account_name : "\u2713";
        if (data.warnings && data.warnings.length) { refSpan.textContent += " — " + data.warnings.join(" "); }
      }
      var amountMsgs = (errs.amount || []).concat(errs.payment_method_code || []);
      setMsg(row, "amount", amount && amount.value ? amountMsgs : [], false);
      if (vat) { vat.disabled = !data.vat_override; }
    };
    xhr.send(JSON.stringify(body));
  }

  /* pence as the portal shows money everywhere: "£2,940.24" (app/domain/money.gbp) */
  function gbp(pence) {
    var sign = pence < 0 ? "-" : "", p = Math.abs(pence);
    var pounds = String(Math.floor(p / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return sign + "£" + pounds + "." + String(p % 100).padStart(2, "0");
  }

  function total() {
    var sum = 0;
    var inputs = form.querySelectorAll(".line-amount");
    for (var i = 0; i < inputs.length; i++) {
      var v = inputs[i].value.replace(/[£,\s]/g, "");
      if (/^\d+(\.\d{1,2})?$/.test(v)) { sum += Math.round(parseFloat(v) * 100); }
    }
    var out = document.getElementById("receipt-total");
    if (out) { out.textContent = gbp(sum); }
  }

  form.addEventListener("focusout", function (ev) {
    var t = ev.target;
    if (t.classList && (t.classList.contains("line-reference") || t.classList.contains("line-amount") ||
        t.classList.contains("line-fund"))) {
      validateRow(rowOf(t));
      total();
    }
  });
  form.addEventListener("change", function (ev) {
    var t = ev.target;
    if (t.classList && (t.classList.contains("line-fund") || t.classList.contains("line-vat"))) { validateRow(rowOf(t)); }
  });
  form.addEventListener("input", function (ev) {
    if (ev.target.classList && ev.target.classList.contains("line-amount")) { total(); }
  });
  form.addEventListener("submit", function () {
    var sel = form.querySelectorAll(".line-vat");
    for (var i = 0; i < sel.length; i++) { sel[i].disabled = false; }
  });
  var add = document.getElementById("add-line");
  if (add) {
    add.addEventListener("click", function () {
      var first = tbody.querySelector("tr");
      var row = first.cloneNode(true);
      var fields = row.querySelectorAll("input, select");
      for (var i = 0; i < fields.length; i++) {
        if (fields[i].tagName === "SELECT") { fields[i].selectedIndex = 0; } else { fields[i].value = ""; }
      }
      var msgs = row.querySelectorAll(".help-block, .line-msg");
      for (var j = 0; j < msgs.length; j++) { msgs[j].textContent = ""; }
      var cells = row.querySelectorAll(".has-error, .has-success");
      for (var k = 0; k < cells.length; k++) { cells[k].classList.remove("has-error", "has-success"); }
      tbody.appendChild(row);
      var f = row.querySelector("select, input");
      if (f) { f.focus(); }
    });
  }
  tbody.addEventListener("click", function (ev) {
    if (ev.target.classList.contains("remove-line") && tbody.querySelectorAll("tr").length > 1) {
      tbody.removeChild(rowOf(ev.target));
      total();
    }
  });
  total();
}());
