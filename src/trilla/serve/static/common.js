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
  return {
    get: (url) => fetch(url, {headers: headers()}).then(answer),
    post: (url, data) => fetch(url, {method: "POST", headers: headers({"Content-Type": "application/json"}), body: JSON.stringify(data)}).then(answer),
    upload: (url, form) => fetch(url, {method: "POST", headers: headers(), body: form}).then(answer),
    text: (element, value) => { element.textContent = value; },  // never innerHTML: names come from users and files
  };
})();
