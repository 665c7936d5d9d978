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
      var container = sel.parentNode && sel.parentNode.querySelector('.select2-container');
      if (container) {
        // a multiple select's typing box has no label of its own, and its chosen values sit in
        // a <ul> that also holds that box (not a list item): name the box, and let the <ul>
        // be a plain group
        container.querySelectorAll('.select2-search__field').forEach(function (input) {
          input.setAttribute('aria-label', text);
        });
        container.querySelectorAll('ul.select2-selection__rendered').forEach(function (ul) {
          ul.setAttribute('role', 'presentation');
        });
      }
    });
  }
  // select2 redraws its box when a value is chosen or removed
  document.addEventListener('change', function () { setTimeout(nameSelect2, 0); });
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', function () { setTimeout(nameSelect2, 0); });
  } else { setTimeout(nameSelect2, 0); }
  window.addEventListener('load', nameSelect2);
})();
