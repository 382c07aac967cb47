/**
 * Quota history in the admin panel: the pool in accounts' worth and each account's 5-hour and
 * weekly used-percent over 24 h or 7 d, reset times as marks, and when quota runs out at the
 * last hour's rate.
 */
import { api } from "./api.js";
import { legend, lineChart } from "./charts.js";
import { el, replace } from "./dom.js";

const WINDOWS = [
  ["hourly", "5-hour"],
  ["weekly", "Weekly"],
];

/**
 * Say how long until a Unix time, roughly ("~3 h", "~25 min", "~2 d").
 * @param {number} ts
 * @param {number} now
 * @returns {string}
 */
export function roughly(ts, now) {
  const s = Math.max(0, ts - now);
  if (s < 3600) return `~${Math.max(1, Math.round(s / 60))} min`;
  if (s < 48 * 3600) return `~${Math.round(s / 3600)} h`;
  return `~${Math.round(s / 86400)} d`;
}

/**
 * The projection sentence of one window of one account.
 * @param {any} w {used, resetsAt, ratePerHour, exhaustsAt, resetsFirst}
 * @param {number} now
 * @returns {string}
 */
export function projectionText(w, now) {
  if (w.used === null || w.used === undefined) return "no readings yet";
  if (w.ratePerHour === null || w.ratePerHour === undefined) return "not enough recent readings for a projection";
  if (w.ratePerHour === 0) return "not used in the last hour";
  if (w.resetsFirst) return `at the last hour's rate (${w.ratePerHour}%/h), it resets before it runs out`;
  return `at the last hour's rate (${w.ratePerHour}%/h), runs out in ${roughly(w.exhaustsAt, now)}`;
}

/**
 * The pool's sentence for one window: accounts' worth left and when it runs out.
 * @param {any} p pool window {known, accountsLeft, accountsPerHour, exhaustsAt}
 * @param {number} now
 * @returns {string}
 */
export function poolText(p, now) {
  if (!p.known) return "no readings yet";
  const left = `${p.accountsLeft.toFixed(1)} of ${p.known} account${p.known === 1 ? "" : "s"} left`;
  if (!p.accountsPerHour) return `${left}; not used in the last hour`;
  if (p.exhaustsAt === null) return `${left}; at the last hour's rate, windows reset before the pool runs out`;
  return `${left}; at the last hour's rate, the pool runs out in ${roughly(p.exhaustsAt, now)}`;
}

/**
 * Render one report.
 * @param {HTMLElement} out
 * @param {any} data
 */
function render(out, data) {
  const { since, now } = data;
  const pool = data.pool;
  const poolSeries = WINDOWS.map(([key, name]) => ({
    name: `${name} left (accounts)`,
    cls: `s-${key}`,
    points: pool[key].series.map((p) => [p.ts, p.left]),
  }));
  const poolMax = Math.max(1, pool.accounts);
  const parts = [
    el(
      "div",
      { class: "quota-pool", "data-quota": "pool" },
      el("h3", {}, "Pool"),
      ...WINDOWS.map(([key, name]) =>
        el("p", { class: "projection", "data-window": key }, el("strong", {}, `${name}: `), poolText(pool[key], now)),
      ),
      lineChart({
        title: `Pool: accounts' worth of quota left, last ${data.hours} h`,
        xMin: since,
        xMax: now,
        yMax: poolMax,
        yUnit: "",
        series: poolSeries,
      }),
      legend(poolSeries),
    ),
  ];
  for (const a of data.accounts) {
    const series = WINDOWS.map(([key, name]) => ({
      name: `${name} used`,
      cls: `s-${key}`,
      step: true,
      points: [...a.points.map((p) => [p.ts, key === "hourly" ? p.hourlyUsed : p.weeklyUsed]), [now, a[key].used]],
    }));
    const marks = a.resets.map((r) => ({
      x: r.at,
      cls: `s-${r.window}`,
      label: `${r.window === "hourly" ? "5-hour" : "Weekly"} window resets ${new Date(r.at * 1000).toLocaleString()}`,
    }));
    parts.push(
      el(
        "div",
        { class: "quota-account", "data-quota": a.account || String(a.accountId) },
        el("h3", {}, a.account || `account #${a.accountId}`),
        ...WINDOWS.map(([key, name]) =>
          el(
            "p",
            { class: "projection", "data-window": key },
            el("strong", {}, `${name}: `),
            a[key].used === null ? "" : `${Math.round(a[key].used)}% used; `,
            projectionText(a[key], now),
            a[key].resetsAt && a[key].resetsAt > now ? ` (resets in ${roughly(a[key].resetsAt, now)})` : "",
          ),
        ),
        lineChart({
          title: `${a.account || a.accountId}: used percent, last ${data.hours} h`,
          xMin: since,
          xMax: now,
          yMax: 100,
          yUnit: "%",
          series,
          marks,
        }),
        legend(series),
      ),
    );
  }
  if (!data.accounts.length) parts.push(el("p", { class: "muted" }, "No linked account has reported its limits yet."));
  replace(out, ...parts);
}

/**
 * Mount the quota section: a range switch (24 h / 7 d) and the charts.
 * @param {HTMLElement} root holds `[data-quota-range]` buttons and a `.quota-out` box
 * @param {(err: unknown) => void} onError
 * @returns {{reload: () => Promise<void>}}
 */
export function mountQuota(root, onError) {
  const out = /** @type {HTMLElement} */ (root.querySelector(".quota-out"));
  const buttons = [...root.querySelectorAll("[data-quota-range]")];
  let hours = 24;
  async function reload() {
    try {
      render(out, await api("GET", `/api/admin/quota-history?hours=${hours}`));
    } catch (err) {
      onError(err);
    }
  }
  for (const button of buttons) {
    button.addEventListener("click", () => {
      hours = Number(button.getAttribute("data-quota-range"));
      for (const b of buttons) b.setAttribute("aria-pressed", String(b === button));
      reload();
    });
  }
  return { reload };
}
