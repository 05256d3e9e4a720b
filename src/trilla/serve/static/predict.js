// The predict page: several files at once (POST /predict), each answered with its top-k as bars.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  if (!$("form")) return;
  const model = () => $("model").value;
  const isPicture = () => $("model").selectedOptions[0].dataset.input === "image";

  function bars(container, record) {
    container.replaceChildren();
    if (record.error) { const p = document.createElement("p"); trilla.text(p, "could not read it: " + record.error); container.append(p); return; }
    const rows = record.predictions || Object.entries(record.values || {}).map(([label, value]) => ({label, probability: value}));
    for (const p of rows) {
      const row = document.createElement("div"); row.className = "bar-row";
      const name = document.createElement("span"); trilla.text(name, p.label);
      const track = document.createElement("div"); const fill = document.createElement("div"); fill.className = "fill";
      fill.style.width = `${Math.max(0, Math.min(1, p.probability)) * 100}%`; track.append(fill);
      const value = document.createElement("span"); trilla.text(value, (100 * p.probability).toFixed(1) + "%");
      row.append(name, track, value); container.append(row);
    }
  }

  function card(name, file) {
    const node = $("result").content.firstElementChild.cloneNode(true);
    trilla.text(node.querySelector(".name"), name);
    if (file) {
      const url = URL.createObjectURL(file);
      if (file.type.startsWith("audio/") || /\.(wav|mp3|flac|ogg|m4a)$/i.test(file.name)) { const a = node.querySelector(".sound"); a.src = url; a.hidden = false; }
      else { const img = node.querySelector(".thumb"); img.src = url; img.hidden = false; }
    }
    $("results").prepend(node);
    return node;
  }

  async function predictFiles(files) {
    if (!files.length) return;
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    const cards = [...files].map((f) => card(f.name, f));
    try {
      const body = await trilla.upload(`/predict?model=${encodeURIComponent(model())}&top_k=${$("topk").value}`, form);
      body.results.forEach((record, i) => {
        bars(cards[i].querySelector(".bars"), record);
        cards[i].dataset.label = record.predictions && record.predictions.length ? record.predictions[0].label : "";
        if (isPicture() && !record.error) {
          const button = cards[i].querySelector(".cam"); button.hidden = false;
          button.addEventListener("click", () => explain(files[i], cards[i]), {once: true});
        }
      });
      trilla.text($("message"), "");
    } catch (err) { trilla.text($("message"), err.message); }
  }

  async function explain(file, node) {
    const form = new FormData(); form.append("data", file, file.name);
    const response = await fetch(`/v2/models/${encodeURIComponent(model())}/explain/`, {method: "POST", body: form});
    if (!response.ok) { trilla.text($("message"), (await response.json()).message); return; }
    const img = node.querySelector(".heat"); img.src = URL.createObjectURL(await response.blob()); img.hidden = false;
  }

  $("files").addEventListener("change", (e) => predictFiles(e.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); predictFiles(e.dataTransfer.files); });
  if ($("fetch")) $("fetch").addEventListener("click", async () => {
    const url = $("url").value.trim(); if (!url) return;
    const node = card(url, null);
    try {
      const body = await fetch(`/v2/models/${encodeURIComponent(model())}/predict/?top_k=${$("topk").value}&urls=${encodeURIComponent(url)}`, {method: "POST"})
        .then(async (r) => { const b = await r.json(); if (!r.ok) throw new Error(b.message); return b; });
      const p = body.predictions;
      bars(node.querySelector(".bars"), {predictions: p.labels.map((label, i) => ({label, probability: p.probabilities[i]}))});
    } catch (err) { bars(node.querySelector(".bars"), {error: err.message}); }
  });
})();
