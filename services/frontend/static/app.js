// Progressive enhancement only: the page works the same without it.
// - Filter rows as you type, when the table holds the whole list (one
//   page); the form still filters server-side on submit.
// - Ask before deleting.
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("q");
  const table = document.querySelector("#students[data-complete]");
  const rows = table ? table.querySelectorAll("tbody tr") : [];
  if (box && rows.length) {
    box.addEventListener("input", () => {
      const needle = box.value.trim().toLowerCase();
      rows.forEach((row) => {
        row.hidden = needle !== "" && !row.dataset.name.includes(needle);
      });
    });
  }
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});
