// The workshop server's pages: upload a notebook (drag-and-drop or the file input) without
// leaving the page, and keep the page's live part current (self-contained, no library).
(function () {
  var live = document.getElementById("live");
  var form = document.getElementById("upload");
  var version = live.dataset.version;
  var timer = null;

  function busy() {
    return live.querySelector("[data-busy]") !== null;
  }

  function poll() {
    clearTimeout(timer);
    fetch(live.dataset.src + "?v=" + encodeURIComponent(version), { cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (response.status !== 200) { return null; }
        version = response.headers.get("X-Version") || version;
        return response.text().then(function (text) { live.innerHTML = text; });
      })
      .catch(function () { return null; })
      .then(function () {
        var every = parseInt(busy() ? live.dataset.busyEvery : live.dataset.every, 10);
        timer = setTimeout(poll, every);
      });
  }

  if (form) {
    var message = document.getElementById("message");
    var input = document.getElementById("file");
    var drop = document.getElementById("drop");
    var most = parseInt(form.dataset.maxBytes, 10);

    var send = function (file) {
      if (file.size > most) {
        message.textContent = file.name + " is over the " + form.dataset.maxMb + " MiB limit; clear the outputs (Edit > Clear all outputs) and upload it again.";
        message.className = "failed";
        return;
      }
      var data = new FormData();
      data.append("csrf", form.elements.csrf.value);
      data.append("notebook", file, file.name);
      message.textContent = "Uploading " + file.name + "…";
      message.className = "muted";
      fetch(form.action, { method: "POST", body: data, headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          return response.json().then(function (body) {
            message.textContent = body.message;
            message.className = response.ok ? "passed" : "failed";
          });
        })
        .catch(function () {
          message.textContent = "The upload did not reach the server; try again.";
          message.className = "failed";
        })
        .then(poll);
    };

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (input.files.length) { send(input.files[0]); }
    });
    drop.addEventListener("dragover", function (event) {
      event.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
    drop.addEventListener("drop", function (event) {
      event.preventDefault();
      drop.classList.remove("over");
      if (event.dataTransfer.files.length) { send(event.dataTransfer.files[0]); }
    });
  }

  timer = setTimeout(poll, parseInt(live.dataset.busyEvery, 10));
})();
