/** Operator alerts in the admin panel: what was raised and whether the webhook got it. */
import { api } from "./api.js";
import { el, replace, when } from "./dom.js";

const STATE_TEXT = {
  pending: "sending",
  retrying: "retrying",
  delivered: "delivered",
  failed: "delivery failed",
  not_sent: "not sent (no webhook)",
};

/**
 * One alert as a list item: time, text and delivery state (with the last error when it failed).
 * @param {any} a
 * @returns {HTMLElement}
 */
function item(a) {
  const bad = a.state === "failed" || a.state === "retrying";
  const detail = [STATE_TEXT[a.state] || a.state];
  if (a.attempts > 1) detail.push(`${a.attempts} tries`);
  if (a.lastError) detail.push(a.lastError);
  if (a.nextAttemptAt) detail.push(`next try ${when(a.nextAttemptAt)}`);
  return el(
    "li",
    { "data-kind": a.kind, "data-state": a.state },
    el("span", { class: "muted small" }, when(a.at)),
    " ",
    el("strong", {}, a.kind.replace(/_/g, " ")),
    " ",
    a.text,
    " ",
    el("span", { class: bad ? "pill bad" : a.state === "delivered" ? "pill ok" : "pill" }, detail.join(" · ")),
  );
}

/**
 * Load and show the alerts into a list element.
 * @param {HTMLElement} list
 * @param {HTMLElement} note where the webhook state is said
 */
export async function renderAlerts(list, note) {
  const data = await api("GET", "/api/admin/alerts");
  note.textContent = data.webhookConfigured
    ? `Sent to the webhook (alertWebhookUrl); quota alerts at ${data.quotaPercent}%.`
    : `No webhook set (alertWebhookUrl): alerts are only listed here; quota alerts at ${data.quotaPercent}%.`;
  const items = data.data.map(item);
  replace(list, ...(items.length ? items : [el("li", { class: "muted" }, "No alerts.")]));
}
