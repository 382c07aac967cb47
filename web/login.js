/** Admin sign-in page. */
import { api } from "./api.js";
import { onSubmit, say } from "./dom.js";

const form = /** @type {HTMLFormElement} */ (document.getElementById("login-form"));
const status = /** @type {HTMLElement} */ (document.getElementById("status"));

onSubmit(
  form,
  async (data) => {
    say(status, "Signing in…");
    await api("POST", "/api/auth/login", {
      username: String(data.get("username") || ""),
      password: String(data.get("password") || ""),
    });
    location.assign("/");
  },
  (err) => say(status, err instanceof Error ? err.message : String(err), "error"),
);
