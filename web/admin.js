/** Admin panel: users, limits, keys, master key, usage and audit; refreshes every 15 s. */

import { renderAlerts } from "./alerts.js";
import { ApiError, api } from "./api.js";
import { action, bar, copy, el, limitParts, limitsSummary, onSubmit, replace, say, when } from "./dom.js";
import { mountQuota } from "./quota.js";
import { mountRequestLog } from "./requests.js";
import { mountUsageCharts } from "./usage_charts.js";

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const status = $("status");
const REFRESH_MS = 15000;

/**
 * Go to /login when the admin session is gone; otherwise show the error.
 * @param {unknown} err
 */
function fail(err) {
  if (err instanceof ApiError && err.status === 401) {
    location.assign("/login");
    return;
  }
  say(status, err instanceof Error ? err.message : String(err), "error");
}

/**
 * A small stat card.
 * @param {string} label
 * @param {string} value
 */
function stat(label, value) {
  return el(
    "div",
    { class: "card stat" },
    el("div", { class: "muted small" }, label),
    el("div", { class: "stat-value" }, value),
  );
}

/**
 * Quota left in accounts' worth ("1.6 of 3 accounts"): percentages of different accounts do
 * not add up, fractions of an account do.
 * @param {any[]} users
 * @param {string} field
 * @returns {string}
 */
function worth(users, field) {
  const counted = users.filter((u) => u.linked && u.hasKey && u[field] !== null && u[field] !== undefined);
  if (!counted.length) return "—";
  const left = counted.reduce((sum, u) => sum + u[field] / 100, 0);
  return `${left.toFixed(1)} of ${counted.length} account${counted.length === 1 ? "" : "s"}`;
}

/** @param {any} data */
function renderTotals(data) {
  const t = data.totals || {};
  replace(
    $("totals"),
    stat("Users", String(t.users ?? data.users.length)),
    stat("Linked / keyed", `${t.linked ?? 0} / ${t.keyed ?? 0}`),
    stat("Eligible for the pool", String(t.eligible ?? "—")),
    stat("5-hour quota left", worth(data.users, "hourlyRemaining")),
    stat("Weekly quota left", worth(data.users, "weeklyRemaining")),
    stat("Next reset", t.nextResetAt ? when(t.nextResetAt) : "—"),
  );
}

/**
 * Marks an account whose backend refused the client's instructions: its chat turns now carry
 * Codex's full instructions (more tokens per request) until the gateway restarts.
 * @param {number} since
 */
function instructionsMarker(since) {
  return el(
    "span",
    {
      class: "pill warn",
      "data-marker": "instructions-fallback",
      title: `The backend refused the client's instructions on ${new Date(since * 1000).toLocaleString()}; this account's chat turns use Codex's own instructions until the gateway restarts.`,
    },
    "Codex instructions",
  );
}

/** @param {any} user */
function userRow(user) {
  const keyCell = user.hasKey
    ? el(
        "span",
        {},
        el("code", {}, user.keyHint || ""),
        user.keyLabel ? el("span", { class: "muted small" }, ` ${user.keyLabel}`) : null,
      )
    : el("span", { class: "muted" }, "no key");
  const pool = user.eligible
    ? el("span", { class: "pill ok" }, "eligible")
    : el("span", { class: "pill" }, (user.ineligibleReason || "—").replace(/_/g, " "));
  return el(
    "tr",
    { "data-username": user.username },
    el("th", { scope: "row" }, user.username),
    el(
      "td",
      {},
      user.linked ? el("span", { class: "pill ok" }, "linked") : el("span", { class: "pill" }, "not linked"),
      user.instructionsFallbackAt ? instructionsMarker(user.instructionsFallbackAt) : null,
    ),
    el("td", {}, keyCell),
    el(
      "td",
      { class: "small limits", title: user.hasKey ? limitsSummary(user.keyLimits, user.keyUsageToday) : null },
      ...(user.hasKey
        ? limitParts(user.keyLimits, user.keyUsageToday, true).map((part) => el("div", {}, part))
        : ["—"]),
    ),
    el("td", {}, bar("5-hour", user.hourlyRemaining, user.hourlyResetsAt, user.limitsStale)),
    el("td", {}, bar("Weekly", user.weeklyRemaining, user.weeklyResetsAt, user.limitsStale)),
    el("td", {}, pool),
    el("td", { class: "small" }, when(user.lastUsedAt)),
    el("td", {}, String(user.requestsServed ?? 0)),
    el(
      "td",
      { class: "actions" },
      el(
        "div",
        { class: "actions-inner" },
        el(
          "button",
          { class: "secondary", disabled: !user.hasKey, onclick: action(() => reveal(user.username), fail) },
          "Reveal key",
        ),
        el(
          "button",
          {
            class: "secondary",
            disabled: !user.hasKey,
            onclick: () => editLimits({ username: user.username }, user.username, user.keyLimits),
          },
          "Limits",
        ),
        el("button", { class: "danger", onclick: action(() => remove(user.username), fail) }, "Delete"),
      ),
    ),
  );
}

/** @param {any} data */
function renderUsers(data) {
  const rows = data.users.map(userRow);
  if (!rows.length) {
    rows.push(
      el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No portal users yet. Users register on /openai.")),
    );
  }
  replace($("users"), ...rows);
  replace($("usernames"), ...data.users.map((u) => el("option", { value: u.username })));
  const m = data.masterKey || {};
  replace(
    $("master"),
    m.exists
      ? el(
          "div",
          {},
          el(
            "p",
            {},
            "Current: ",
            el("code", {}, m.hint || ""),
            ` (${m.label || "master"}), created ${when(m.createdAt)}, last used ${when(m.lastUsedAt)}`,
          ),
          el(
            "p",
            { class: "row" },
            el("span", { class: "small", id: "master-limits" }, limitsSummary(m.limits, m.usageToday)),
            el(
              "button",
              { class: "secondary", onclick: () => editLimits({ master: true }, "the master key", m.limits) },
              "Limits",
            ),
          ),
        )
      : el("p", { class: "muted" }, "No master key yet."),
  );
  $("refreshed").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

/**
 * Show a secret once with a copy button.
 * @param {HTMLElement} where
 * @param {string} title
 * @param {string} key
 */
function showSecret(where, title, key) {
  const local = el("p", { class: "status", role: "status", "aria-live": "polite" });
  replace(
    where,
    el(
      "div",
      { class: "secret" },
      el("div", { class: "small" }, title),
      el("code", { class: "key" }, key),
      el("button", { onclick: () => copy(key, local) }, "Copy"),
      local,
    ),
  );
}

/** @param {string} username */
async function reveal(username) {
  const data = await api("POST", "/api/admin/openai-users/reveal-key", { username });
  showSecret($("master-new"), `Key of ${username}:`, data.key);
  say(status, `Key of ${username} revealed below the master key section.`, "ok");
  $("master-new").scrollIntoView({ block: "nearest" });
}

const limitsDialog = /** @type {HTMLDialogElement} */ ($("limits-dialog"));
const limitsForm = /** @type {HTMLFormElement} */ ($("limits-form"));
/** @param {string} id */
const limitsField = (id) => /** @type {HTMLInputElement} */ (limitsForm.elements.namedItem(id));
/** The key the open limits dialog edits. @type {{target: {username?: string, master?: boolean}, name: string}} */
let limitsOf = { target: {}, name: "" };

/**
 * Open the limits dialog for one key; saving sends what the admin enters (blank = no cap).
 * @param {{username?: string, master?: boolean}} target
 * @param {string} name
 * @param {any} current
 */
function editLimits(target, name, current) {
  const c = current || {};
  limitsOf = { target, name };
  $("limits-title").textContent = `Limits of ${name}`;
  limitsField("requestsPerDay").value = c.requestsPerDay ?? "";
  limitsField("tokensPerDay").value = c.tokensPerDay ?? "";
  limitsField("concurrentRequests").value = c.concurrentRequests ?? "";
  limitsField("allowedModels").value = c.allowedModels ? c.allowedModels.join(", ") : "";
  say($("limits-status"), "");
  limitsDialog.showModal();
}

onSubmit(
  limitsForm,
  async () => {
    const { target, name } = limitsOf;
    /** @param {string} id */
    const num = (id) => (limitsField(id).value.trim() === "" ? null : Number(limitsField(id).value));
    const models = limitsField("allowedModels").value.trim();
    const body = {
      ...target,
      requestsPerDay: num("requestsPerDay"),
      tokensPerDay: num("tokensPerDay"),
      concurrentRequests: num("concurrentRequests"),
      allowedModels: models === "" ? null : models.split(/[\s,]+/).filter(Boolean),
    };
    await api("POST", "/api/admin/openai-users/key-limits", body);
    limitsDialog.close();
    say(status, `Saved the limits of ${name}.`, "ok");
    await refresh();
  },
  (err) => {
    if (err instanceof ApiError && err.status === 401) fail(err);
    else say($("limits-status"), err instanceof Error ? err.message : String(err), "error");
  },
);

/** @param {string} username */
async function remove(username) {
  if (!confirm(`Delete ${username}? Their key, sessions and ChatGPT link are removed.`)) return;
  await api("POST", "/api/admin/openai-users/delete", { username });
  say(status, `Deleted ${username}.`, "ok");
  await refresh();
}

/** @param {any} data */
function renderAudit(data) {
  const items = (data.data || []).map((e) =>
    el(
      "li",
      {},
      el("span", { class: "muted small" }, when(e.ts)),
      " ",
      el("strong", {}, e.action),
      " ",
      e.actor || "",
      e.target ? ` → ${e.target}` : "",
    ),
  );
  replace($("audit"), ...(items.length ? items : [el("li", { class: "muted" }, "Nothing yet.")]));
}

/**
 * Requests per day (bars) with per-account requests and tokens in each bar's tooltip, then
 * per day and account the input tokens, the cached ones and the prompt cache's hit share.
 * @param {any} data
 */
function renderUsage(data) {
  /** @type {Map<string, {requests: number, tokens: number, parts: string[]}>} */
  const days = new Map();
  for (const row of data.byAccount || []) {
    const day = days.get(row.day) || { requests: 0, tokens: 0, parts: [] };
    const tokens = (row.inputTokens || 0) + (row.outputTokens || 0);
    day.requests += row.requests || 0;
    day.tokens += tokens;
    day.parts.push(`${row.username || "(none)"}: ${row.requests} req, ${tokens} tok`);
    days.set(row.day, day);
  }
  if (!days.size) {
    replace($("usage"), el("p", { class: "muted" }, "No requests in this period."));
    return;
  }
  const rows = [...days.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const max = Math.max(1, ...rows.map(([, d]) => d.requests));
  /** @param {number | null | undefined} share */
  const pct = (share) => (share === null || share === undefined ? "—" : `${Math.round(share * 100)}%`);
  const table = el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { id: "usage-cache" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["Day", "Account", "Requests", "Input tokens", "Cached tokens", "Cache hits"].map((h) => el("th", {}, h)),
        ),
      ),
      el(
        "tbody",
        {},
        ...(data.byAccount || []).map((/** @type {any} */ row) =>
          el(
            "tr",
            {},
            el("td", {}, row.day),
            el("td", {}, row.username || "(none)"),
            el("td", {}, String(row.requests || 0)),
            el("td", {}, String(row.inputTokens || 0)),
            el("td", {}, String(row.cachedTokens || 0)),
            el("td", {}, pct(row.cacheHitShare)),
          ),
        ),
      ),
    ),
  );
  replace(
    $("usage"),
    el(
      "div",
      { class: "chart", role: "img", "aria-label": "Requests per day" },
      ...rows.map(([day, d]) => {
        const col = el("div", { class: "chart-bar" });
        col.style.height = `${Math.max(2, (d.requests / max) * 100)}%`;
        const title = `${day}: ${d.requests} requests, ${d.tokens} tokens\n${d.parts.join("\n")}`;
        return el(
          "div",
          { class: "chart-col", title },
          el("span", { class: "small" }, String(d.requests)),
          col,
          el("span", { class: "small muted" }, day.slice(5)),
        );
      }),
    ),
    table,
  );
}

/**
 * The cluster's nodes and the accounts each owns (cluster mode only; hidden on one node).
 * @param {any} data
 */
function renderCluster(data) {
  const section = $("cluster");
  const cluster = data.cluster;
  section.hidden = !cluster;
  if (!cluster) return;
  const names = new Map(data.users.map((u) => [u.id, u.username]));
  replace(
    $("cluster-nodes"),
    ...cluster.nodes.map((/** @type {any} */ n) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, n.id + (n.self ? " (this node)" : "")),
        el("td", { class: "small" }, n.url),
        el("td", {}, n.live ? "live" : "silent"),
        el("td", {}, `${n.heartbeatAgeS} s ago`),
        el(
          "td",
          { class: "small" },
          n.accounts.length
            ? n.accounts
                .map(
                  (/** @type {any} */ a) =>
                    `${names.get(a.userId) ?? `#${a.userId}`} (${Math.round(a.heldForS)} s, ${Math.round(a.expiresInS)} s)`,
                )
                .join(", ")
            : "—",
        ),
      ),
    ),
  );
}

/** Reload everything; keeps the scroll position (rows are replaced in place). */
async function refresh() {
  try {
    const users = await api("GET", "/api/admin/openai-users");
    renderTotals(users);
    renderUsers(users);
    renderCluster(users);
  } catch (err) {
    fail(err);
    return;
  }
  api("GET", "/api/admin/audit?limit=30")
    .then(renderAudit)
    .catch(() => {});
  api("GET", "/api/admin/usage?days=14")
    .then(renderUsage)
    .catch(() => {});
  quota.reload();
  usageCharts.reload();
  renderAlerts($("alerts-list"), $("alerts-note")).catch(() => {});
}

onSubmit(
  /** @type {HTMLFormElement} */ ($("rotate-master")),
  async (form) => {
    const label = String(form.get("label") || "");
    const data = await api("POST", "/api/admin/openai-users/rotate-master-key", label ? { label } : {});
    showSecret($("master-new"), "New master key (shown once; the old one no longer works):", data.key);
    say(status, "Master key rotated.", "ok");
    await refresh();
  },
  fail,
);

$("limits-cancel").addEventListener("click", () => /** @type {HTMLDialogElement} */ ($("limits-dialog")).close());

$("logout").addEventListener("click", async () => {
  try {
    await api("POST", "/api/auth/logout");
  } finally {
    location.assign("/login");
  }
});

const quota = mountQuota($("quota"), fail);
const usageCharts = mountUsageCharts($("usage-charts"), "/api/admin/usage/series", fail);
refresh();
setInterval(refresh, REFRESH_MS);
mountRequestLog($("requests"), { path: "/api/admin/requests", admin: true, onError: fail }).reload();
