/* Behaviour that would otherwise be inline event handlers, which the Content-Security-Policy
   refuses: [data-ims-print] buttons print the page; form[data-confirm] asks before submitting. */
(function () {
  "use strict";
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest && ev.target.closest("[data-ims-print]");
    if (button) { ev.preventDefault(); window.print(); }
  });
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { ev.preventDefault(); }
  });
}());
