// The labelling page: one item at a time, answered with buttons, number keys or the feelings plane.
"use strict";
(() => {
  const root = document.getElementById("label");
  const project = root.dataset.project, kind = root.dataset.kind;
  const api = (path) => `/label/${encodeURIComponent(project)}/api/${path}`;
  const $ = (id) => document.getElementById(id);
  const picture = $("picture"), sound = $("sound"), player = $("player"), wave = $("wave");
  const axes = JSON.parse(root.dataset.axes);
  let annotator = localStorage.getItem("trilla-annotator") || "";
  let item = null, shownAt = 0, point = null, chosen = new Set(), started = false, revisiting = false, skippedLeft = 0;
  $("annotator").value = annotator;

  function say(text) { trilla.text($("message"), text); }

  function mark() {
    for (const button of document.querySelectorAll(".choice")) {
      const value = button.dataset.value;
      const on = kind === "multilabel" ? chosen.has(value) : (item && item.answer === value);
      button.classList.toggle("chosen", Boolean(on));
      button.setAttribute("aria-pressed", on ? "true" : "false");
    }
    const dot = $("point");
    if (dot) {
      dot.toggleAttribute("hidden", point === null);  // an SVG element has no hidden property: the attribute it is
      if (point) { dot.setAttribute("cx", point[0]); dot.setAttribute("cy", -point[1]); }
      trilla.text($("coords"), point ? `${axes[0]} ${point[0].toFixed(2)}, ${axes[1]} ${point[1].toFixed(2)}` : `${axes[0]} –, ${axes[1]} –`);
    }
  }

  function finished(skipped) {
    item = null; skippedLeft = skipped;
    $("work").hidden = true; $("done").hidden = false;
    player.pause();
    trilla.text($("done-text"), skipped
      ? `Every item has been shown to you; ${trilla.plural(skipped, "item")} you skipped ${skipped === 1 ? "is" : "are"} still without your answer.`
      : "Every item has your answer. Thank you.");
    $("revisit").hidden = !skipped;
    if (skipped) $("revisit").focus();
  }

  function show(next) {
    trilla.text($("guessed"), "");
    $("moves").hidden = false;
    if (!next.item) { finished(next.skipped); return stats(); }
    item = next.item;
    $("work").hidden = false; $("done").hidden = true;
    shownAt = performance.now();
    point = kind === "plane" && Array.isArray(item.answer) ? item.answer.slice() : null;
    chosen = new Set(kind === "multilabel" && Array.isArray(item.answer) ? item.answer : []);
    const mine = item.skipped ? " · you skipped it" : item.answer !== null ? " · your answer: " + JSON.stringify(item.answer) : "";
    trilla.text($("counter"), `${item.position} of ${item.total} done · item ${item.id}` + mine);
    trilla.text($("filename"), item.name);
    if ($("given")) trilla.text($("given"), item.given || "none");
    $("bar").style.width = `${(100 * item.position) / Math.max(1, item.total)}%`;
    const audio = item.media === "audio";
    picture.hidden = audio; sound.hidden = !audio; $("replay").hidden = !audio;
    if (audio) {
      player.src = item.url;
      player.play().catch(() => say("press R (or the play button) to listen"));
      trilla.drawWave(wave, item.url).catch((err) => say("no waveform: " + err.message));
    } else {
      player.pause();
      picture.alt = item.name;
      picture.src = item.url;
    }
    mark();
    stats();
  }

  async function run(promise) {
    try { show(await promise); say(""); } catch (err) { say(err.message); }
  }
  const seconds = () => (performance.now() - shownAt) / 1000;
  const send = (value) => item && run(trilla.post(api("answer"), {annotator, item: item.id, value, seconds: seconds(), revisit: revisiting}));
  const confirm = () => {
    if (!item) { if (skippedLeft) $("revisit").click(); return; }
    if (kind === "plane") { if (point) send([point[0], point[1]]); else say("click the plane first (or move the point with the arrow keys)"); }
    else if (kind === "multilabel") send([...chosen]);
  };

  async function stats() {
    try {
      const s = await trilla.get(api("stats"));
      const alpha = s.agreement.alpha;
      trilla.text($("stats"), `${s.answered} of ${s.items} items answered by ${trilla.plural(s.annotators.length, "annotator")}` +
        (alpha === null || alpha === undefined ? "" : ` · Krippendorff's alpha ${alpha.toFixed(2)}`));
    } catch (err) { /* stats are a courtesy */ }
  }

  function begin() {
    annotator = $("annotator").value.trim();
    if (!annotator) return say("type your name first");
    localStorage.setItem("trilla-annotator", annotator);
    $("annotator").blur();  // the keys answer from now on, not type into the name
    started = true; revisiting = false;
    run(trilla.get(api("next") + "?annotator=" + encodeURIComponent(annotator)));
  }
  $("start").addEventListener("click", begin);
  $("annotator").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); begin(); } });

  for (const button of document.querySelectorAll(".choice")) {
    button.addEventListener("click", () => {
      if (kind === "multilabel") { chosen.has(button.dataset.value) ? chosen.delete(button.dataset.value) : chosen.add(button.dataset.value); mark(); }
      else send(button.dataset.value);
    });
  }
  if ($("confirm")) $("confirm").addEventListener("click", confirm);
  $("skip").addEventListener("click", () => item && run(trilla.post(api("skip"), {annotator, item: item.id, seconds: seconds(), revisit: revisiting})));
  $("back").addEventListener("click", () => run(trilla.get(api("back") + `?annotator=${encodeURIComponent(annotator)}` + (item ? `&before=${item.id}` : ""))));
  $("undo").addEventListener("click", () => run(trilla.post(api("undo"), {annotator})));
  $("revisit").addEventListener("click", () => {
    revisiting = true;
    run(trilla.get(api("next") + `?annotator=${encodeURIComponent(annotator)}&revisit=true`));
  });
  $("replay").addEventListener("click", () => { player.currentTime = 0; player.play(); });
  if ($("guess")) $("guess").addEventListener("click", async () => {
    if (!item) return;
    const g = await trilla.get(api("guess/" + item.id));
    const votes = (p) => `${p.label} ${p.votes} of ${p.runs}`, share = (p) => `${p.label} ${(100 * p.probability).toFixed(0)}%`;
    trilla.text($("guessed"), !g.predictions ? "the model could not read it"
      : g.predictions[0].votes !== undefined ? "the models' votes: " + g.predictions.map(votes).join(", ")
      : "model: " + g.predictions.map(share).join(", "));
  });
  trilla.seekOnClick(wave, player);

  const plane = $("plane");
  if (plane) {
    plane.addEventListener("click", (e) => {
      const at = new DOMPoint(e.clientX, e.clientY).matrixTransform(plane.getScreenCTM().inverse());
      point = [Math.max(-1, Math.min(1, at.x)), Math.max(-1, Math.min(1, -at.y))];
      mark();
      say("");
      plane.focus();
    });
  }

  document.addEventListener("keydown", (e) => {
    if (!started || e.target.tagName === "INPUT") return;
    const key = e.key;
    if (key === "b" || key === "B") return $("back").click();
    if (key === "u" || key === "U" || (key === "z" && (e.ctrlKey || e.metaKey))) return $("undo").click();
    if (key === "Enter") { e.preventDefault(); return confirm(); }
    if (!item) return;
    if (/^[1-9]$/.test(key) && kind !== "plane") {
      const button = document.querySelectorAll(".choice")[Number(key) - 1];
      if (button) button.click();
    }
    else if (key === "s" || key === "S") $("skip").click();
    else if ((key === "r" || key === "R" || key === " ") && item.media === "audio") { e.preventDefault(); $("replay").click(); }
    else if ((key === "g" || key === "G") && $("guess")) $("guess").click();
    else if (kind === "plane" && key.startsWith("Arrow")) {
      e.preventDefault();
      point = point || [0, 0];
      const step = 0.02, moves = {ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step]};
      point = [Math.max(-1, Math.min(1, point[0] + moves[key][0])), Math.max(-1, Math.min(1, point[1] + moves[key][1]))].map((v) => Math.round(v * 1e4) / 1e4);
      mark();
    }
  });
})();
