// The dashboard's only script, served from /ui/app.js because the CSP allows
// no inline script: a confirmation before destructive actions (forms with
// data-confirm) and the tenant picker that opens a tenant on selection.
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('form[data-confirm]').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      if (!window.confirm(form.getAttribute('data-confirm'))) {
        event.preventDefault();
      }
    });
  });
  var picker = document.getElementById('tenant-select');
  if (picker) {
    picker.addEventListener('change', function () {
      picker.form.submit();
    });
  }
});
