/* Account holder files: upload with fetch (the upload's own progress), then the check's and the
   apply's progress, polled until they finish (the page then reloads to show the result). */
(function () {
  "use strict";
  var form = document.getElementById("account-upload-form");
  if (form) {
    var err = document.getElementById("account-upload-error");
    var box = document.getElementById("account-upload-progress");
    var bar = document.getElementById("account-upload-bar");
    var texts = document.getElementById("account-sync-texts");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      err.hidden = true;
      var button = document.getElementById("account-submit");
      button.disabled = true;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-Requested-With", "fetch");
      box.hidden = false;
      xhr.upload.addEventListener("progress", function (ev) {
        if (ev.lengthComputable) {
          var pct = Math.round(100 * ev.loaded / ev.total);
          bar.style.width = pct + "%"; bar.textContent = pct + "%";
          bar.setAttribute("aria-valuenow", pct);
        }
      });
      xhr.addEventListener("load", function () {
        button.disabled = false;
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (ex) { body = {}; }
        if (xhr.status === 201 && body.url) { window.location.assign(body.url); return; }
        box.hidden = true;
        var msgs = [body.message || texts.getAttribute("data-failed")].concat(
          (body.lines || []).slice(0, 200).map(function (l) { return l.message; }));
        err.textContent = "";
        msgs.forEach(function (m) { var p = document.createElement("div"); p.textContent = m; err.appendChild(p); });
        err.hidden = false;
      });
      xhr.addEventListener("error", function () {
        button.disabled = false; box.hidden = true;
        err.textContent = texts.getAttribute("data-failed"); err.hidden = false;
      });
      xhr.send(new FormData(form));
    });
  }

  var panel = document.getElementById("sync-progress");
  if (panel) {
    var initial = panel.getAttribute("data-status");
    if (initial !== "checking" && initial !== "applying") { return; }
    var line = document.getElementById("sync-progress-line");
    var sbar = document.getElementById("sync-bar");
    var poll = function () {
      fetch(panel.getAttribute("data-progress-url"),
            {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (resp) { return resp.json(); })
        .then(function (r) {
          sbar.style.width = r.percent + "%"; sbar.textContent = r.percent + "%";
          sbar.setAttribute("aria-valuenow", r.percent);
          if (r.status === "checking" || r.status === "applying") {
            setTimeout(poll, 400);
          } else {
            line.textContent = r.status_label;
            panel.setAttribute("data-finished", r.status);
            window.location.reload();
          }
        })
        .catch(function () { setTimeout(poll, 2000); });
    };
    poll();
  }
})();
