// kubekeep ui: small conveniences over server-rendered pages (every page works without them).
"use strict";

function liveFilter(input) {
  const table = document.querySelector(input.dataset.liveFilter);
  if (!table) return;
  input.addEventListener("input", () => {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const row of table.querySelectorAll("tbody tr[data-search]")) {
      const text = row.dataset.search.toLowerCase();
      row.hidden = !words.every((w) => text.includes(w));
    }
  });
}

function compareButton(button) {
  const form = button.form;
  const boxes = () => [...form.querySelectorAll('input[type="checkbox"][name="s"]')];
  const update = () => { button.disabled = boxes().filter((b) => b.checked).length !== 2; };
  form.addEventListener("change", update);
  update();
}

const modal = () => document.getElementById("modal");

async function loadInto(body, response) {
  body.innerHTML = await response.text();
  wire(body);
  const focus = body.querySelector("[autofocus], .primary, .danger, input, select, button");
  if (focus) focus.focus();
}

async function openDialog(url) {
  const dialog = modal();
  const body = dialog.querySelector(".modal-body");
  body.textContent = "Loading…";
  if (!dialog.open) dialog.showModal();
  const response = await fetch(url, { headers: { "X-Fragment": "1" }, credentials: "same-origin" });
  await loadInto(body, response);
}

async function submitInDialog(form, event) {
  const dialog = modal();
  if (!dialog.contains(form)) return;  // a full page: let the browser post the form
  event.preventDefault();
  const body = dialog.querySelector(".modal-body");
  for (const b of form.querySelectorAll("button")) b.disabled = true;
  const note = document.createElement("p");
  note.className = "muted working";
  note.textContent = "Asking the cluster…";
  form.append(note);
  const response = await fetch(form.action, {
    method: "POST", credentials: "same-origin",
    headers: { "X-Fragment": "1", "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(new FormData(form)),
  });
  await loadInto(body, response);
}

function wire(root) {
  for (const el of root.querySelectorAll("[data-live-filter]")) liveFilter(el);
  for (const el of root.querySelectorAll("[data-needs-two]")) compareButton(el);
  for (const el of root.querySelectorAll("[data-autosubmit]")) el.addEventListener("change", () => el.form.submit());
  for (const el of root.querySelectorAll("a[data-dialog]")) {
    el.addEventListener("click", (event) => { event.preventDefault(); openDialog(el.getAttribute("href")); });
  }
  for (const el of root.querySelectorAll("form[data-in-dialog]")) el.addEventListener("submit", (e) => submitInDialog(el, e));
  for (const el of root.querySelectorAll("[data-close]")) {
    el.addEventListener("click", () => { const d = modal(); if (d.open && d.contains(el)) d.close(); else history.back(); });
  }
}

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || modal().open || event.altKey || event.ctrlKey || event.metaKey) return;
  const link = { ArrowLeft: "timeline-prev", ArrowRight: "timeline-next" }[event.key];
  const el = link && document.getElementById(link);
  if (el) el.click();
});

document.addEventListener("DOMContentLoaded", () => wire(document));
