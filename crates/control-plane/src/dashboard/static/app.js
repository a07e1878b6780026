// The dashboard's only script, served from /ui/app.js because the CSP allows
// no inline script: a confirmation before destructive actions (forms with
// data-confirm), the tenant picker that opens a tenant on selection, and live
// updates: an element with data-live="URL" is replaced every 5 s by the HTML
// that URL returns as JSON ({"html": "…"}, rendered and escaped by the
// server), so the rest of the page (a filter being typed, a form) stays put.
document.addEventListener('DOMContentLoaded', function () {
  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (form.hasAttribute && form.hasAttribute('data-confirm') &&
        !window.confirm(form.getAttribute('data-confirm'))) {
      event.preventDefault();
    }
  });
  var picker = document.getElementById('tenant-select');
  if (picker) {
    picker.addEventListener('change', function () {
      picker.form.submit();
    });
  }
  document.querySelectorAll('[data-live]').forEach(function (el) {
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(el.getAttribute('data-live'), {
        credentials: 'same-origin',
        headers: { 'Accept': 'application/json' }
      }).then(function (response) {
        return response.ok ? response.json() : null;
      }).then(function (body) {
        if (body && typeof body.html === 'string') {
          el.innerHTML = body.html;
          el.setAttribute('data-updated', String(Date.now()));
        }
      }).catch(function () {}).then(function () { busy = false; });
    }, 5000);
  });
});
