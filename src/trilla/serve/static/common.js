// Shared by every page: requests carry the page's CSRF token and, when the server has one, the bearer token.
"use strict";
const trilla = (() => {
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const tokenField = document.getElementById("token");
  if (tokenField) {
    tokenField.value = sessionStorage.getItem("trilla-token") || "";
    tokenField.addEventListener("change", () => sessionStorage.setItem("trilla-token", tokenField.value));
  }
  function headers(extra) {
    const h = Object.assign({"X-CSRF-Token": csrf}, extra || {});
    const token = tokenField ? tokenField.value : "";
    if (token) h["Authorization"] = "Bearer " + token;
    return h;
  }
  async function answer(response) {
    const body = await response.json().catch(() => ({message: response.statusText}));
    if (!response.ok) throw new Error(body.message || response.statusText);
    return body;
  }
  async function drawWave(canvas, url) {
    // The sound's peaks across the canvas: a person sees where the loud parts are, and clicks to seek there.
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    const data = await (await fetch(url)).arrayBuffer();
    const decoded = await new OfflineAudioContext(1, 1, 44100).decodeAudioData(data);
    const samples = decoded.getChannelData(0), step = Math.max(1, Math.floor(samples.length / canvas.width));
    context.fillStyle = "#2a6f97";
    for (let x = 0; x < canvas.width; x++) {
      let peak = 0;
      for (let i = x * step; i < Math.min(samples.length, (x + 1) * step); i++) peak = Math.max(peak, Math.abs(samples[i]));
      const h = Math.max(1, peak * canvas.height);
      context.fillRect(x, (canvas.height - h) / 2, 1, h);
    }
  }
  function seekOnClick(canvas, player) {
    canvas.addEventListener("click", (e) => {
      if (player.duration) { player.currentTime = (e.offsetX / canvas.clientWidth) * player.duration; player.play(); }
    });
  }
  return {
    drawWave,
    seekOnClick,
    plural: (n, one, many) => `${n} ${n === 1 ? one : (many || one + "s")}`,
    get: (url) => fetch(url, {headers: headers()}).then(answer),
    post: (url, data) => fetch(url, {method: "POST", headers: headers({"Content-Type": "application/json"}), body: JSON.stringify(data)}).then(answer),
    upload: (url, form) => fetch(url, {method: "POST", headers: headers(), body: form}).then(answer),
    text: (element, value) => { element.textContent = value; },  // never innerHTML: names come from users and files
  };
})();
