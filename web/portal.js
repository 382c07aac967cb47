/** Portal: sign-in, device linking, key, quick test, limits and pool opt-in. */
import { ApiError, api, streamChat } from "./api.js";
import { action, bar, copy, el, limitsSummary, onSubmit, replace, say, when } from "./dom.js";
import { mountRequestLog } from "./requests.js";
import { mountUsageCharts } from "./usage_charts.js";

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const status = $("status");
const API_BASE = `${location.origin}/api/openai/v1`;
let polling = 0;

/** @param {unknown} err */
function fail(err) {
  if (err instanceof ApiError && err.status === 401) {
    showSignIn();
    return;
  }
  say(status, err instanceof Error ? err.message : String(err), "error");
}

function showSignIn() {
  $("signin").hidden = false;
  $("app").hidden = true;
  replace($("who"));
}

/** @param {any} device */
function renderDevice(device, linked) {
  const box = $("device");
  const state = device ? device.state : linked ? "linked" : "idle";
  if (linked || state === "linked") {
    replace(
      box,
      el("p", {}, el("span", { class: "pill ok" }, "linked"), " Your ChatGPT account is linked."),
      el("button", { class: "secondary", onclick: action(unlink, fail) }, "Unlink"),
    );
    return;
  }
  const parts = [];
  if (state === "awaiting_user" && device.userCode) {
    const local = el("p", { class: "status", role: "status", "aria-live": "polite" });
    parts.push(
      el(
        "p",
        {},
        "Open ",
        el("a", { href: device.verificationUrl, target: "_blank", rel: "noopener noreferrer" }, device.verificationUrl),
        ", sign in to ChatGPT and enter this code:",
      ),
      el(
        "div",
        { class: "row" },
        el("code", { class: "user-code", id: "user-code" }, device.userCode),
        el("button", { onclick: () => copy(device.userCode, local) }, "Copy code"),
      ),
      local,
      el("p", { class: "muted small" }, `Expires ${when(device.expiresAt)}. Waiting for you to confirm…`),
      el("button", { class: "secondary", onclick: action(cancel, fail) }, "Cancel"),
    );
  } else if (state === "starting") {
    parts.push(el("p", {}, "Starting Codex device login…"));
  } else {
    if (device?.error) parts.push(el("p", { class: "status status-error" }, device.error));
    parts.push(
      el("button", { onclick: action(startLink, fail) }, state === "idle" ? "Link ChatGPT account" : "Try again"),
    );
  }
  if (device?.logs?.length) {
    parts.push(
      el("details", {}, el("summary", {}, "Codex output"), el("pre", { class: "logs" }, device.logs.join("\n"))),
    );
  }
  replace(box, ...parts);
}

async function startLink() {
  say(status, "Starting device login…");
  renderDevice(await api("POST", "/api/openai/codex/device/start"), false);
  say(status, "Open the link and enter the code.", "ok");
  poll();
}

async function cancel() {
  renderDevice(await api("POST", "/api/openai/codex/device/cancel"), false);
  say(status, "Linking cancelled.", "info");
}

async function unlink() {
  if (!confirm("Unlink your ChatGPT account?")) return;
  await api("POST", "/api/openai/codex/unlink");
  say(status, "Unlinked.", "ok");
  await load();
}

function poll() {
  clearInterval(polling);
  polling = setInterval(async () => {
    try {
      const device = await api("GET", "/api/openai/codex/device/status");
      if (device.state !== "awaiting_user" && device.state !== "starting") {
        clearInterval(polling);
        if (device.linked) say(status, "Your ChatGPT account is linked.", "ok");
        await load();
      }
    } catch (err) {
      clearInterval(polling);
      fail(err);
    }
  }, 2000);
}

/** @param {string} key */
function snippets(key) {
  const curl = `curl ${API_BASE}/chat/completions \\\n  -H "Authorization: Bearer ${key}" -H "Content-Type: application/json" \\\n  -d '{"model": "codex", "messages": [{"role": "user", "content": "Hello"}]}'`;
  const py = `from openai import OpenAI\n\nclient = OpenAI(base_url="${API_BASE}", api_key="${key}")\nprint(client.chat.completions.create(\n    model="codex", messages=[{"role": "user", "content": "Hello"}]\n).choices[0].message.content)`;
  return [
    el("h3", {}, "curl"),
    el("pre", { class: "snippet" }, curl),
    el("h3", {}, "Python"),
    el("pre", { class: "snippet" }, py),
  ];
}

/** @param {any} me */
function render(me) {
  $("signin").hidden = true;
  $("app").hidden = false;
  replace($("who"), el("span", {}, me.username), " ", el("button", { class: "link", onclick: logout }, "Sign out"));
  renderDevice(me.device, me.linked);
  if (me.device && (me.device.state === "awaiting_user" || me.device.state === "starting")) poll();
  replace(
    $("key"),
    me.hasKey
      ? el(
          "div",
          {},
          el(
            "p",
            {},
            "Current key: ",
            el("code", { id: "key-hint" }, me.keyHint),
            me.keyLabel ? ` (${me.keyLabel})` : "",
            `, created ${when(me.keyCreatedAt)}.`,
          ),
          el(
            "p",
            { class: "muted small", id: "key-limits" },
            "Today (UTC): ",
            limitsSummary(me.keyLimits, me.keyUsageToday),
            ".",
          ),
        )
      : el("p", { class: "muted" }, "No key yet: make one to use the API."),
  );
  const l = me.limits || {};
  replace(
    $("limits"),
    el(
      "div",
      { class: "row" },
      el("span", { class: "label" }, "5-hour"),
      bar("5-hour", l.hourlyRemaining, l.hourlyResetsAt, l.limitsStale),
    ),
    el(
      "div",
      { class: "row" },
      el("span", { class: "label" }, "Weekly"),
      bar("Weekly", l.weeklyRemaining, l.weeklyResetsAt, l.limitsStale),
    ),
    el(
      "p",
      { class: "muted small" },
      me.poolEligible
        ? "Your account is serving the pool."
        : `Not in the pool now${me.poolIneligibleReason ? `: ${me.poolIneligibleReason.replace(/_/g, " ")}` : ""}.`,
    ),
  );
  /** @type {HTMLInputElement} */ ($("opt-in")).checked = !!me.poolOptIn;
}

/**
 * Per-day usage: requests made with my key, and requests my account served (pool included).
 * @param {any} data
 */
function renderUsage(data) {
  /** @type {Map<string, {mine: number, served: number, pool: number, tokens: number}>} */
  const days = new Map();
  const day = (d) => days.get(d) || { mine: 0, served: 0, pool: 0, tokens: 0 };
  for (const r of data.byKey || []) {
    const d = day(r.day);
    d.mine += r.requests || 0;
    days.set(r.day, d);
  }
  for (const r of data.servedByAccount || []) {
    const d = day(r.day);
    d.served += r.requests || 0;
    d.pool += r.poolRequests || 0;
    d.tokens += (r.inputTokens || 0) + (r.outputTokens || 0);
    days.set(r.day, d);
  }
  if (!days.size) {
    replace($("usage"), el("p", { class: "muted" }, "No requests yet."));
    return;
  }
  const head = el(
    "tr",
    {},
    ...["Day", "With my key", "Served by my account", "of them for the pool", "Tokens"].map((h) =>
      el("th", { scope: "col" }, h),
    ),
  );
  const rows = [...days.entries()].map(([d, v]) =>
    el(
      "tr",
      {},
      el("th", { scope: "row" }, d),
      el("td", {}, String(v.mine)),
      el("td", {}, String(v.served)),
      el("td", {}, String(v.pool)),
      el("td", {}, String(v.tokens)),
    ),
  );
  replace($("usage"), el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
}

async function load() {
  try {
    render(await api("GET", "/api/openai/auth/me"));
  } catch (err) {
    fail(err);
    return;
  }
  api("GET", "/api/openai/usage?days=7")
    .then(renderUsage)
    .catch(() => {});
  requestLog.reload();
  usageCharts.reload();
}

async function logout() {
  await api("POST", "/api/openai/auth/logout").catch(() => {});
  say(status, "Signed out.", "info");
  showSignIn();
}

onSubmit(
  /** @type {HTMLFormElement} */ ($("auth-form")),
  async (data, event) => {
    const submitter = /** @type {HTMLButtonElement|null} */ (event.submitter);
    const verb = submitter && submitter.dataset.action === "register" ? "register" : "login";
    await api("POST", `/api/openai/auth/${verb}`, {
      username: String(data.get("username")),
      password: String(data.get("password")),
    });
    say(status, verb === "register" ? "Welcome! Link your ChatGPT account below." : "Signed in.", "ok");
    await load();
  },
  fail,
);

onSubmit(
  /** @type {HTMLFormElement} */ ($("rotate-key")),
  async (form) => {
    const label = String(form.get("label") || "");
    const data = await api("POST", "/api/openai/keys/rotate", label ? { label } : {});
    const local = el("p", { class: "status", role: "status", "aria-live": "polite" });
    replace(
      $("key-new"),
      el(
        "div",
        { class: "secret" },
        el("div", { class: "small" }, "Your new key (shown once; the previous one stopped working):"),
        el("code", { class: "key", id: "new-key" }, data.key),
        el("button", { onclick: () => copy(data.key, local) }, "Copy"),
        local,
        ...snippets(data.key),
      ),
    );
    say(status, "New key created.", "ok");
    await load();
  },
  fail,
);

onSubmit(
  /** @type {HTMLFormElement} */ ($("quick")),
  async (form) => {
    const prompt = String(form.get("prompt") || "");
    const out = $("answer");
    out.textContent = "";
    say(status, "Asking Codex…");
    await streamChat("/api/openai/codex/execute-session", { prompt }, (text) => {
      out.textContent += text;
    });
    say(status, "Done.", "ok");
    api("GET", "/api/openai/usage?days=7")
      .then(renderUsage)
      .catch(() => {});
    requestLog.reload();
  },
  fail,
);

const optIn = /** @type {HTMLInputElement} */ ($("opt-in"));
optIn.addEventListener(
  "change",
  action(
    async () => {
      await api("POST", "/api/openai/pool/opt-in", { optIn: optIn.checked });
      say(status, optIn.checked ? "Your account may serve the pool." : "Your account left the pool.", "ok");
    },
    (err) => {
      optIn.checked = !optIn.checked; // the change did not take: show the state the server kept
      fail(err);
    },
  ),
);

const requestLog = mountRequestLog($("requests"), { path: "/api/openai/requests", admin: false });
const usageCharts = mountUsageCharts($("usage-charts"), "/api/openai/usage/series", () => {});
load();
