/* The Imports page: upload with fetch, live progress of an import, and the list of import batches
   kept up to date without a reload (a new upload appears at the top and its row follows its
   progress). Loaded with the page's nonce; no inline handlers (Content-Security-Policy).
   Words come from the page (#import-i18n, JSON), figures from /imports/<id>/progress ("shown"). */
(function () {
  "use strict";
  var box = document.getElementById("import-progress");
  if (!box) { return; }
  var T = JSON.parse(document.getElementById("import-i18n").textContent);
  var FINISHED = ["succeeded", "failed", "reversed"];

  function text(id, v) { var el = document.getElementById(id); if (el) { el.textContent = v; } }
  function cell(row, v, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    if (v instanceof Node) { td.appendChild(v); } else { td.textContent = v; }
    row.appendChild(td);
  }
  var LABELS = {succeeded: "success", failed: "danger", reversed: "warning"};

  /* the row of import r in #import-list: replaced if present, else added at the top */
  function listRow(r) {
    var table = document.getElementById("import-list");
    if (!table) { return; }
    var body = table.tBodies[0];
    var row = document.createElement("tr");
    row.setAttribute("data-import-id", r.id);
    var link = document.createElement("a");
    link.href = r.shown.detail_url; link.textContent = r.id;
    cell(row, link);
    cell(row, r.filename); cell(row, r.shown.format);
    var badge = document.createElement("span");
    badge.className = "label label-" + (LABELS[r.status] || "info");
    badge.textContent = r.shown.status;
    cell(row, badge);
    cell(row, r.shown.history, "small");
    cell(row, String(r.rows_total), "text-right"); cell(row, String(r.rows_posted), "text-right");
    cell(row, String(r.rows_suspense), "text-right");
    cell(row, r.shown.total_amount, "text-right"); cell(row, r.created_by);
    var old = body.querySelector('tr[data-import-id="' + r.id + '"]');
    var empty = body.querySelector("tr.ims-no-imports");
    if (empty) { empty.parentNode.removeChild(empty); }
    if (old) { body.replaceChild(row, old); } else { body.insertBefore(row, body.firstChild); }
  }

  function show(r) {
    var bar = document.getElementById("import-bar");
    bar.style.width = r.percent + "%"; bar.textContent = r.percent + "%";
    bar.setAttribute("aria-valuenow", r.percent);
    var finished = FINISHED.indexOf(r.status) >= 0;
    text("import-status-line", r.status === "received" ? T.queued :
         finished ? (r.status === "failed" ? T.failed : T.done) :
         T.processing + " " + r.rows_done + " " + T.of + " " + r.rows_total);
    document.getElementById("import-result").hidden = false;
    text("r-status", r.shown.status); text("r-rows", r.rows_done + " / " + r.rows_total);
    text("r-posted", r.rows_posted + " (" + r.shown.posted_amount + ")");
    text("r-suspense", r.rows_suspense + " (" + r.shown.suspense_amount + ")");
    text("r-total", r.shown.total_amount); text("r-control", r.control_total || T.none);
    text("r-dates", !r.first_date ? T.none : r.first_date === r.last_date ? r.shown.first_date :
         r.shown.first_date + " – " + r.shown.last_date);
    text("r-dups", r.rows_duplicate ? r.duplicates.map(function (d) { return T.line + " " + d.line; }).join(", ") : T.none);
    var ul = document.getElementById("import-errors"); ul.textContent = "";
    (r.errors || []).forEach(function (e) {
      var li = document.createElement("li");
      li.textContent = e.message; ul.appendChild(li);
    });
    listRow(r);
    if (finished) {
      bar.classList.remove("active", "progress-bar-striped");
      bar.classList.add(r.status === "failed" ? "progress-bar-danger" : "progress-bar-success");
      document.getElementById("import-links").hidden = false;
      document.getElementById("link-detail").href = r.shown.detail_url;
      document.getElementById("link-transactions").href = r.shown.transactions_url;
      document.getElementById("link-suspense").href = r.shown.suspense_url;
      box.setAttribute("data-finished", r.status);
    }
    return finished;
  }

  function poll(url) {
    box.hidden = false;
    box.removeAttribute("data-finished");
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (resp) { return resp.json(); })
      .then(function (r) { if (!show(r)) { setTimeout(function () { poll(url); }, 500); } })
      .catch(function () { setTimeout(function () { poll(url); }, 2000); });
  }
  window.imsImportPoll = poll;
  if (box.getAttribute("data-progress-url")) { poll(box.getAttribute("data-progress-url")); }

  var form = document.getElementById("import-form");
  if (!form) { return; }
  var input = document.getElementById("import-file");
  var zone = document.getElementById("drop-zone");
  var err = document.getElementById("upload-error");
  var submit = document.getElementById("import-submit");
  function named() { text("drop-name", input.files.length ? input.files[0].name : ""); }
  input.addEventListener("change", named);
  ["dragenter", "dragover"].forEach(function (ev) {
    zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.add("ims-drop-over"); });
  });
  ["dragleave", "drop"].forEach(function (ev) {
    zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.remove("ims-drop-over"); });
  });
  zone.addEventListener("drop", function (e) {
    if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; named(); }
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    err.hidden = true;
    submit.disabled = true;
    fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin",
                        headers: {"Accept": "application/json", "X-Requested-With": "fetch"}})
      .then(function (resp) { return resp.json().then(function (body) { return [resp.status, body]; }); })
      .then(function (res) {
        submit.disabled = false;
        var status = res[0], body = res[1];
        if (status === 201) { window.imsImportPoll(body.progress_url); return; }
        var msgs = [body.message].concat((body.lines || []).slice(0, 50).map(function (l) { return l.message; }));
        err.textContent = "";
        msgs.forEach(function (m) { var p = document.createElement("div"); p.textContent = m; err.appendChild(p); });
        err.hidden = false;
      })
      .catch(function () {
        submit.disabled = false;
        err.textContent = T.upload_failed; err.hidden = false;
      });
  });
}());
