/**
 * The request log (admin panel and portal): a filter form, a table of requests newest first
 * with a "Show more" cursor, each row expandable to its request id and error message.
 * Everything is built with textContent (dom.js); nothing from the server is parsed as HTML.
 */
import { api } from "./api.js";
import { el, replace, say, when } from "./dom.js";

const PAGE = 50;

/**
 * Format a duration in milliseconds ("812 ms", "12.4 s"), or a dash.
 * @param {number|null|undefined} ms
 * @returns {string}
 */
export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Format a token count, or a dash.
 * @param {number|null|undefined} n
 * @returns {string}
 */
function tokens(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString();
}

/**
 * Read a datetime-local input as Unix seconds (the browser's local time), or "".
 * @param {FormData} form
 * @param {string} name
 * @returns {string}
 */
function unixOf(form, name) {
  const raw = String(form.get(name) || "");
  if (!raw) return "";
  const ms = new Date(raw).getTime();
  return Number.isFinite(ms) ? String(ms / 1000) : "";
}

/**
 * Who made a request: the key owner, the master key or a portal session.
 * @param {any} r
 * @returns {string}
 */
function caller(r) {
  if (r.keyKind === "master") return "master key";
  if (r.keyKind === "session") return `${r.account || "?"} (portal)`;
  return r.user || (r.userId ? `#${r.userId} (deleted)` : "—");
}

/**
 * The two table rows of one request: the summary (with an expand button) and its hidden detail.
 * @param {any} r
 * @param {boolean} admin
 * @returns {HTMLElement[]}
 */
function rowsOf(r, admin) {
  const failed = r.status >= 400;
  const detailId = `req-detail-${r.id}`;
  const toggle = el(
    "button",
    { class: "link", "aria-expanded": "false", "aria-controls": detailId, title: "Show the details" },
    "▸",
  );
  const cells = [
    el("td", {}, toggle),
    el("td", { class: "small nowrap" }, when(r.ts)),
    admin ? el("td", {}, caller(r)) : null,
    el("td", {}, r.account || (r.accountId ? `#${r.accountId}` : "—")),
    el("td", { class: "small" }, r.model || "—", r.effort ? el("span", { class: "muted" }, ` · ${r.effort}`) : null),
    el("td", { class: "small" }, r.endpoint),
    el(
      "td",
      {},
      el("span", { class: failed ? "pill bad" : "pill ok" }, String(r.status)),
      r.errorCode ? el("span", { class: "small muted" }, ` ${r.errorCode}`) : null,
    ),
    el("td", { class: "num small" }, duration(r.ttftMs)),
    el("td", { class: "num small" }, duration(r.durationMs)),
    el(
      "td",
      { class: "num small" },
      `${tokens(r.inputTokens)} / ${tokens(r.cachedTokens)} / ${tokens(r.outputTokens)}`,
    ),
  ].filter(Boolean);
  const summary = el("tr", { class: failed ? "req failed" : "req", "data-request-id": r.requestId || "" }, ...cells);
  const facts = [
    ["Request id", r.requestId || "—"],
    ["Started", when(r.startedAt)],
    ["Finished", when(r.ts)],
    ["Key", r.keyKind || "—"],
    ["Stream", r.stream ? "yes" : "no"],
    ["Reasoning tokens", tokens(r.reasoningTokens)],
  ];
  if (failed) {
    facts.push(["Error", `${r.errorCode || "—"} (${r.errorSource || "unknown source"})`]);
    facts.push(["Message", r.errorMessage || "—"]);
  }
  const detail = el(
    "tr",
    { class: "req-detail", id: detailId, hidden: true },
    el(
      "td",
      { colspan: cells.length },
      el(
        "dl",
        { class: "facts" },
        ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, k === "Request id" ? el("code", {}, v) : v)]),
      ),
    ),
  );
  toggle.addEventListener("click", () => {
    const open = detail.hidden;
    detail.hidden = !open;
    toggle.textContent = open ? "▾" : "▸";
    toggle.setAttribute("aria-expanded", String(open));
  });
  return [summary, detail];
}

/**
 * Mount a request log into a container that holds a `form.req-filters`, a `tbody`, a
 * `button.more` and a status line (`[data-log=status]`).
 * @param {HTMLElement} root
 * @param {{path: string, admin: boolean, onError?: (err: unknown) => void}} options
 * @returns {{reload: () => Promise<void>}}
 */
export function mountRequestLog(root, options) {
  const form = /** @type {HTMLFormElement} */ (root.querySelector("form.req-filters"));
  const body = /** @type {HTMLElement} */ (root.querySelector("tbody"));
  const more = /** @type {HTMLButtonElement} */ (root.querySelector("button.more"));
  const line = /** @type {HTMLElement} */ (root.querySelector("[data-log=status]"));
  let cursor = null;
  let query = "";
  let shown = 0;

  /** Build the query string from the filter form. */
  function fromForm() {
    const data = new FormData(form);
    const params = new URLSearchParams();
    for (const name of ["user", "account", "status"]) {
      const value = String(data.get(name) || "").trim();
      if (value) params.set(name, value);
    }
    for (const name of ["since", "until"]) {
      const value = unixOf(data, name);
      if (value) params.set(name, value);
    }
    params.set("limit", String(PAGE));
    return params.toString();
  }

  /**
   * Fetch one page and append it (or replace the table on a fresh query).
   * @param {boolean} fresh
   */
  async function load(fresh) {
    const url = `${options.path}?${query}${!fresh && cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    let page;
    try {
      page = await api("GET", url);
    } catch (err) {
      say(line, err instanceof Error ? err.message : String(err), "error");
      if (options.onError) options.onError(err);
      return;
    }
    const rows = page.data.flatMap((r) => rowsOf(r, options.admin));
    if (fresh) {
      shown = 0;
      replace(body, ...rows);
    } else {
      body.append(...rows);
    }
    shown += page.data.length;
    cursor = page.nextCursor;
    more.hidden = !page.hasMore;
    say(
      line,
      shown
        ? `${shown} request${shown === 1 ? "" : "s"} shown${page.hasMore ? "; more below" : ""}.`
        : "No requests match.",
    );
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    query = fromForm();
    load(true);
  });
  form.addEventListener("reset", () => {
    setTimeout(() => {
      query = fromForm();
      load(true);
    });
  });
  more.addEventListener("click", () => load(false));
  query = fromForm();
  return { reload: () => load(true) };
}
