// Follows an audit job (export or verification) on its progress page: polls the job's
// JSON status, moves the progress bar, and reloads the page for the outcome once done.
(function () {
  "use strict";

  function follow(box) {
    var url = box.getAttribute("data-status-url");
    var bar = document.getElementById("job-progress");
    var count = document.getElementById("job-count");
    var state = document.getElementById("job-state");

    function show(status) {
      if (status.total !== null && status.total > 0) {
        bar.max = status.total;
        bar.value = status.done;
        count.textContent = status.done + " / " + status.total;
      } else {
        count.textContent = String(status.done);
      }
      state.textContent = status.state;
    }

    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("status " + response.status);
          }
          return response.json();
        })
        .then(function (status) {
          show(status);
          if (status.finished) {
            window.location.reload();
          } else {
            window.setTimeout(poll, 1000);
          }
        })
        .catch(function () {
          window.setTimeout(poll, 5000); // a blip: try again, more slowly
        });
    }

    poll();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("audit-job");
    if (box && ["queued", "running"].indexOf(box.getAttribute("data-state")) !== -1) {
      follow(box);
    }
  });
})();
