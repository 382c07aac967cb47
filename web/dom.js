/**
 * DOM helpers: every element is built with textContent, never innerHTML with data.
 */

/**
 * Create an element.
 * @param {string} tag
 * @param {Record<string, any>} [attrs] attributes; `on*` functions become listeners
 * @param {...(Node|string|null|undefined|false)} children
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.className = value;
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * Replace all children of a node.
 * @param {Element} node
 * @param {...(Node|string)} children
 */
export function replace(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

/**
 * Show a status message in an aria-live region.
 * @param {Element} region
 * @param {string} text
 * @param {"ok"|"error"|"info"} [kind]
 */
export function say(region, text, kind = "info") {
  region.className = `status status-${kind}`;
  region.textContent = text;
}

/**
 * Run an async action for a user's click or change: the control that fired it is disabled until
 * the action settles (no double submit), and a failure goes to `onError` (each screen shows
 * errors its own way: a status line, a redirect to sign-in).
 * @param {(event: Event) => Promise<unknown>} run
 * @param {(err: unknown) => void} onError
 * @returns {(event: Event) => Promise<void>} the event listener
 */
export function action(run, onError) {
  return async (event) => {
    const control = /** @type {HTMLButtonElement|HTMLInputElement|null} */ (event.currentTarget);
    const hold = control && "disabled" in control && !control.disabled ? [control] : [];
    await pending(hold, () => run(event), onError);
  };
}

/**
 * Handle a form's submit with an async function instead of a page load: its submit buttons are
 * disabled until `run` settles and a failure goes to `onError`, as with `action`.
 * @param {HTMLFormElement} form
 * @param {(data: FormData, event: SubmitEvent) => Promise<unknown>} run receives the form's fields
 * @param {(err: unknown) => void} onError
 */
export function onSubmit(form, run, onError) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    /** @type {(HTMLButtonElement|HTMLInputElement)[]} */
    const buttons = [...form.querySelectorAll("button:not([type=button]):not([type=reset]), input[type=submit]")];
    const hold = buttons.filter((b) => !b.disabled);
    await pending(hold, () => run(data, /** @type {SubmitEvent} */ (event)), onError);
  });
}

/**
 * Disable `controls` while `run` is pending, then enable them again; errors go to `onError`.
 * @param {(HTMLButtonElement|HTMLInputElement)[]} controls
 * @param {() => Promise<unknown>} run
 * @param {(err: unknown) => void} onError
 */
async function pending(controls, run, onError) {
  for (const control of controls) control.disabled = true;
  try {
    await run();
  } catch (err) {
    onError(err);
  } finally {
    for (const control of controls) control.disabled = false;
  }
}

/**
 * Format a Unix time (seconds) as a local date-time, or a dash.
 * @param {number|null|undefined} ts
 * @returns {string}
 */
export function when(ts) {
  if (!ts) return "—";
  return new Date(ts * 1000).toLocaleString();
}

/**
 * Format the time until a Unix time as "in 2 h 5 min".
 * @param {number|null|undefined} ts
 * @returns {string}
 */
export function until(ts) {
  if (!ts) return "";
  const s = Math.max(0, Math.round(ts - Date.now() / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h >= 48) return `resets in ${Math.round(h / 24)} d`;
  return h ? `resets in ${h} h ${m} min` : `resets in ${m} min`;
}

/**
 * Copy text to the clipboard and report it.
 * @param {string} text
 * @param {Element} region
 */
export async function copy(text, region) {
  try {
    await navigator.clipboard.writeText(text);
    say(region, "Copied to the clipboard.", "ok");
  } catch {
    say(region, "Copy failed: select the text and copy it by hand.", "error");
  }
}

/**
 * A remaining-percent bar with a text label.
 * @param {string} label
 * @param {number|null|undefined} remaining percent left
 * @param {number|null|undefined} resetsAt
 * @param {boolean|null|undefined} stale
 * @returns {HTMLElement}
 */
export function bar(label, remaining, resetsAt, stale) {
  if (remaining === null || remaining === undefined) {
    return el("span", { class: "muted" }, "unknown");
  }
  const pct = Math.max(0, Math.min(100, remaining));
  const level = pct < 10 ? "low" : pct < 40 ? "mid" : "high";
  const fill = el("div", { class: `bar-fill bar-${level}` });
  fill.style.width = `${pct}%`; // CSSOM, not a style attribute: the CSP forbids inline styles
  return el(
    "div",
    { class: "bar-wrap", title: `${label}: ${pct.toFixed(0)}% left` },
    el(
      "div",
      {
        class: "bar",
        role: "meter",
        "aria-valuemin": 0,
        "aria-valuemax": 100,
        "aria-valuenow": pct.toFixed(0),
        "aria-label": `${label} remaining`,
      },
      fill,
    ),
    el("span", { class: "bar-text" }, `${pct.toFixed(0)}%`, stale ? " (stale)" : ""),
    el("span", { class: "muted small" }, until(resetsAt)),
  );
}

/**
 * The parts of a key's limits and today's use of them, long ("12 / 500 requests today") or
 * short for a table cell ("12/500 req").
 * @param {any} limits {requestsPerDay, tokensPerDay, concurrentRequests, allowedModels} or null
 * @param {any} use {requests, tokens, inFlight} or null
 * @param {boolean} [short]
 * @returns {string[]}
 */
export function limitParts(limits, use, short = false) {
  const u = use || { requests: 0, tokens: 0, inFlight: 0 };
  const l = limits || {};
  const n = (v) => Number(v).toLocaleString();
  const of = (used, cap) => (cap != null ? (short ? `${n(used)}/${n(cap)}` : `${n(used)} / ${n(cap)}`) : n(used));
  const parts = [
    `${of(u.requests, l.requestsPerDay)} ${short ? "req" : "requests today"}`,
    `${of(u.tokens, l.tokensPerDay)} ${short ? "tok" : "tokens"}`,
  ];
  if (l.concurrentRequests != null) parts.push(`${of(u.inFlight, l.concurrentRequests)} ${short ? "live" : "at once"}`);
  if (l.allowedModels)
    parts.push(
      l.allowedModels.length ? `${short ? "" : "models: "}${l.allowedModels.join(", ")}` : "no models allowed",
    );
  return parts;
}

/**
 * Say in a few words what a key's limits allow and how much of them today's use took.
 * @param {any} limits
 * @param {any} use
 * @returns {string}
 */
export function limitsSummary(limits, use) {
  return limitParts(limits, use).join(" · ");
}
