// The quiz: the player answers with buttons or number keys, then sees the truth and the model's answer.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let quiz = null, round = null, classes = [], answered = false, pending = null;

  function li(list, text) { const item = document.createElement("li"); trilla.text(item, text); list.append(item); }

  async function scores() {
    const rows = await trilla.get(`/quiz/api/scores?model=${encodeURIComponent($("model").value)}`).catch(() => []);
    $("scores").replaceChildren(...rows.map((r) => {
      const tr = document.createElement("tr");
      for (const v of [r.player, `${r.score}/${r.rounds}`, `${r.model_score}/${r.rounds}`, r.rounds]) { const td = document.createElement("td"); trilla.text(td, String(v)); tr.append(td); }
      return tr;
    }));
  }

  function show(next) {
    round = next; answered = false;
    trilla.text($("counter"), `round ${round.index + 1} of ${quiz.rounds}`);
    trilla.text($("verdict"), ""); $("next").hidden = true;
    const audio = round.media === "audio";
    $("picture").hidden = audio; $("sound").hidden = !audio;
    $("verdict").className = "";
    if (audio) {
      $("player-audio").src = round.url; $("player-audio").play().catch(() => {});
      trilla.drawWave($("wave"), round.url).catch(() => {});  // the sound still plays without its picture
    } else { $("player-audio").pause(); $("picture").src = round.url; }
    for (const b of $("choices").children) { b.disabled = false; b.classList.remove("chosen"); }
  }

  async function answer(value, button) {
    if (answered) return;
    answered = true;
    for (const b of $("choices").children) b.disabled = true;
    button.classList.add("chosen");
    try {
      const out = await trilla.post("/quiz/api/answer", {quiz: quiz.quiz, round: round.index, answer: value});
      $("verdict").className = out.player_right ? "right" : "wrong";
      trilla.text($("verdict"), `${out.player_right ? "Right" : "Wrong"}: it is ${out.truth}. The model said ${out.model} ` +
        `(${(100 * out.confidence).toFixed(0)}% sure, ${out.model_right ? "right" : "wrong"}). You ${out.player_score}, model ${out.model_score}.`);
      pending = out;
      $("next").hidden = false; $("next").focus();
    } catch (err) { trilla.text($("message"), err.message); }
  }

  function advance() {
    if (!pending) return;
    const out = pending; pending = null;
    if (out.next) return show(out.next);
    $("game").hidden = true; $("end").hidden = false;
    trilla.text($("final"), `You ${out.player_score} of ${quiz.rounds}, the model ${out.model_score} of ${quiz.rounds}`);
    $("you-missed").replaceChildren(); $("model-missed").replaceChildren();
    for (const s of out.summary.player_wrong_model_right) li($("you-missed"), `round ${s.round + 1}: ${s.truth} (you said ${s.player})`);
    for (const s of out.summary.model_wrong_player_right) li($("model-missed"), `round ${s.round + 1}: ${s.truth} (the model said ${s.model})`);
    $("you-missed-part").hidden = !out.summary.player_wrong_model_right.length;
    $("model-missed-part").hidden = !out.summary.model_wrong_player_right.length;
    scores();
  }

  $("setup").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      quiz = await trilla.post("/quiz/api/start", {model: $("model").value, player: $("player-name").value, rounds: Number($("rounds").value)});
      classes = quiz.classes;
      $("choices").replaceChildren(...classes.map((name, i) => {
        const b = document.createElement("button"); b.type = "button"; b.className = "choice"; b.dataset.value = name;
        trilla.text(b, (i < 9 ? `${i + 1} ` : "") + name);
        b.addEventListener("click", () => answer(name, b));
        return b;
      }));
      $("setup").hidden = true; $("end").hidden = true; $("game").hidden = false;
      show(quiz.round);
    } catch (err) { trilla.text($("message"), err.message); }
  });
  $("next").addEventListener("click", advance);
  $("replay").addEventListener("click", () => { $("player-audio").currentTime = 0; $("player-audio").play(); });
  trilla.seekOnClick($("wave"), $("player-audio"));
  $("again").addEventListener("click", () => { $("end").hidden = true; $("setup").hidden = false; });
  $("model").addEventListener("change", scores);
  document.addEventListener("keydown", (e) => {
    if ($("game").hidden || e.target.tagName === "INPUT") return;
    if (/^[1-9]$/.test(e.key) && !answered) { const b = $("choices").children[Number(e.key) - 1]; if (b) b.click(); }
    else if (e.key === "Enter" && pending) { e.preventDefault(); advance(); }
    else if ((e.key === "r" || e.key === "R") && round && round.media === "audio") $("replay").click();
  });
  scores();
})();
