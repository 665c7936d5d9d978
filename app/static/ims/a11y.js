/* Accessibility fixes for FAB's widgets: give select2 comboboxes the name of their label. */
(function () {
  function nameSelect2() {
    document.querySelectorAll('select').forEach(function (sel) {
      if (!sel.id) { return; }
      var label = document.querySelector('label[for="' + sel.id + '"]');
      var text = label ? label.textContent.trim() : (sel.getAttribute('name') || sel.id);
      var box = sel.parentNode && sel.parentNode.querySelector('.select2-selection, .select2-choice, .select2-choices');
      if (box) { box.setAttribute('aria-label', text); }
      var rendered = document.getElementById('select2-' + sel.id + '-container');
      if (rendered) { rendered.setAttribute('aria-label', text); }
    });
  }
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', function () { setTimeout(nameSelect2, 0); });
  } else { setTimeout(nameSelect2, 0); }
  window.addEventListener('load', nameSelect2);
})();
