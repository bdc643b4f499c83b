// bridge ops page: auto-refresh of the overview and confirmation of bulk actions. No dependencies.
(function () {
  "use strict";
  var REFRESH_MS = 5000;

  function refresh(box, toggle) {
    if (!toggle.checked || document.hidden) return;
    fetch(box.getAttribute("data-refresh"), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) { if (html !== null) box.innerHTML = html; })
      .catch(function () { /* keep the last view; the next tick tries again */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("overview");
    var toggle = document.getElementById("autorefresh");
    if (box && toggle) {
      window.setInterval(function () { refresh(box, toggle); }, REFRESH_MS);
    }
    document.querySelectorAll("button[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  });
})();
