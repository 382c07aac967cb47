/** Admin sign-in page. */
import { api } from "./api.js";
import { say } from "./dom.js";

const form = /** @type {HTMLFormElement} */ (document.getElementById("login-form"));
const status = /** @type {HTMLElement} */ (document.getElementById("status"));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  say(status, "Signing in…");
  try {
    await api("POST", "/api/auth/login", {
      username: String(data.get("username") || ""),
      password: String(data.get("password") || ""),
    });
    location.assign("/");
  } catch (err) {
    say(status, err.message, "error");
  }
});
