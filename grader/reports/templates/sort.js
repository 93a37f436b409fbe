// Sort the submissions table by the clicked column (self-contained, no library).
document.querySelectorAll("#submissions th[data-sort]").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var body = document.querySelector("#submissions tbody");
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = th.dataset.sort === "number";
    var down = th.dataset.order !== "down";
    th.dataset.order = down ? "down" : "up";
    rows.sort(function (a, b) {
      var x = a.cells[column], y = b.cells[column];
      var u = numeric ? parseFloat(x.dataset.value) : x.textContent.trim();
      var v = numeric ? parseFloat(y.dataset.value) : y.textContent.trim();
      return (u < v ? -1 : u > v ? 1 : 0) * (down ? -1 : 1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
