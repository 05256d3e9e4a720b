// The predict page: several files, one request each (POST /predict), each answered with its top-k as bars.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  if (!$("form")) return;
  const model = () => $("model").value;
  const isPicture = () => $("model").selectedOptions[0].dataset.input === "image";

  function bars(container, record) {
    container.replaceChildren();
    if (record.error) { const p = document.createElement("p"); p.className = "error"; trilla.text(p, record.refused ? record.error : "could not read it: " + record.error); container.append(p); return; }
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

  const SOUND = /\.(wav|mp3|flac|ogg|oga|opus|m4a|aac|aif|aiff|au|webm)$/i, PICTURE = /\.(png|jpe?g|gif|bmp|webp|tiff?)$/i;
  const kindOf = (file) => file.type.startsWith("audio/") || SOUND.test(file.name) ? "audio"
    : file.type.startsWith("image/") || PICTURE.test(file.name) ? "image" : "other";

  function card(name, file) {
    const node = $("result").content.firstElementChild.cloneNode(true);
    trilla.text(node.querySelector(".name"), name);
    if (file) {
      const url = URL.createObjectURL(file);
      if (kindOf(file) === "audio") { const a = node.querySelector(".sound"); a.src = url; a.hidden = false; }
      else { const img = node.querySelector(".thumb"); img.src = url; img.hidden = false; }
    }
    return node;
  }

  function refusal(file) {
    // What the page can tell before sending: a sound for a picture model (or the other way round), a file over the limit.
    const wanted = $("model").selectedOptions[0].dataset.input, kind = kindOf(file), limit = Number($("form").dataset.maxUpload);
    if (wanted === "image" && kind === "audio") return `this is a sound; the model ${model()} takes pictures`;
    if (wanted === "audio" && kind === "image") return `this is a picture; the model ${model()} takes sounds`;
    if (file.size > limit) return `${(file.size / 2 ** 20).toFixed(1)} MB is more than this server takes (${(limit / 2 ** 20).toFixed(0)} MB)`;
    return null;
  }

  async function predictOne(file, node) {
    const form = new FormData();
    form.append("files", file, file.name);
    try {
      const body = await trilla.upload(`/predict?model=${encodeURIComponent(model())}&top_k=${$("topk").value}`, form);
      const record = body.results[0];
      bars(node.querySelector(".bars"), record);
      node.dataset.label = record.predictions && record.predictions.length ? record.predictions[0].label : "";
      if (isPicture() && !record.error) {
        const button = node.querySelector(".cam"); button.hidden = false;
        button.addEventListener("click", () => explain(file, node), {once: true});
      }
    } catch (err) { bars(node.querySelector(".bars"), {error: err.message}); }
    node.classList.remove("waiting");
  }

  async function predictFiles(files) {
    // One request per file, a few at a time: a large batch never exceeds the upload limit, and each
    // card fills in as its answer comes. The cards keep the order the files were chosen in.
    files = [...files];
    if (!files.length) return;
    const nodes = files.map((f) => card(f.name, f));
    $("results").prepend(...nodes);
    const queue = [];
    files.forEach((file, i) => {
      const refused = refusal(file);
      if (refused) bars(nodes[i].querySelector(".bars"), {error: refused, refused: true});
      else { nodes[i].classList.add("waiting"); queue.push([file, nodes[i]]); }
    });
    const worker = async () => { while (queue.length) { const [file, node] = queue.shift(); await predictOne(file, node); } };
    trilla.text($("message"), "");
    await Promise.all(Array.from({length: Math.min(4, queue.length)}, worker));
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
    $("results").prepend(node);
    node.classList.add("waiting");
    try {
      const body = await fetch(`/v2/models/${encodeURIComponent(model())}/predict/?top_k=${$("topk").value}&urls=${encodeURIComponent(url)}`, {method: "POST"})
        .then(async (r) => { const b = await r.json(); if (!r.ok) throw new Error(b.message); return b; });
      const p = body.predictions;
      bars(node.querySelector(".bars"), {predictions: p.labels.map((label, i) => ({label, probability: p.probabilities[i]}))});
    } catch (err) { bars(node.querySelector(".bars"), {error: err.message}); }
    node.classList.remove("waiting");
  });
})();
