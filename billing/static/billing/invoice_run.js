// The invoice run's progress page: polls the run's JSON status until it is done or failed.
(function () {
  "use strict";
  var root = document.getElementById("invoice-run");
  if (!root) { return; }
  var url = root.getAttribute("data-status-url");
  function list(id, items) {
    var ul = document.getElementById(id);
    ul.textContent = "";
    items.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      ul.appendChild(li);
    });
  }
  function show(run) {
    var bar = document.getElementById("invoice-run-progress");
    bar.max = Math.max(run.total, 1);
    bar.value = run.done;
    document.getElementById("invoice-run-stage").textContent = run.stage;
    document.getElementById("invoice-run-count").textContent = run.done + " of " + run.total;
    document.getElementById("invoice-run-summary").textContent =
      "Drafted " + run.drafted + "; issued " + run.issued.length + "; refused " + run.refused.length + ".";
    var error = document.getElementById("invoice-run-error");
    error.textContent = run.error;
    error.hidden = !run.error;
    // The admin's .errornote is display: block, which would show an empty box when hidden.
    error.className = run.error ? "errornote" : "";
    document.getElementById("invoice-run-again").hidden = run.stage !== "failed";
    list("invoice-run-issued", run.issued);
    list("invoice-run-refused", run.refused);
    root.setAttribute("data-stage", run.stage);
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (run) {
        show(run);
        if (run.stage !== "done" && run.stage !== "failed") { window.setTimeout(poll, 1000); }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  poll();
})();
