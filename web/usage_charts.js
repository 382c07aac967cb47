/**
 * Usage charts (admin panel and portal): requests, tokens or errors per hour or day, stacked by
 * account or key, with the cache-hit share. Drawn by charts.js as SVG.
 */
import { api } from "./api.js";
import { barChart } from "./charts.js";
import { el, replace } from "./dom.js";

const METRICS = {
  requests: { label: "Requests", unit: "requests", parts: ["requests"] },
  tokens: { label: "Tokens", unit: "tokens", parts: ["inputTokens", "outputTokens"] },
  cached: { label: "Cached input tokens", unit: "cached tokens", parts: ["cachedTokens"] },
  errors: { label: "Errors", unit: "errors", parts: ["errors"] },
};

/**
 * "1 request", "3 requests".
 * @param {number} n
 * @param {string} noun
 * @returns {string}
 */
function count(n, noun) {
  return `${n.toLocaleString()} ${noun}${n === 1 ? "" : "s"}`;
}

/**
 * Mount a usage chart: `select[name=bucket|by|metric]` controls and a `.usage-out` box.
 * @param {HTMLElement} root
 * @param {string} path the series route
 * @param {(err: unknown) => void} onError
 * @returns {{reload: () => Promise<void>}}
 */
export function mountUsageCharts(root, path, onError) {
  const out = /** @type {HTMLElement} */ (root.querySelector(".usage-out"));
  const pick = (name) => /** @type {HTMLSelectElement} */ (root.querySelector(`select[name=${name}]`)).value;

  async function reload() {
    const bucket = pick("bucket");
    const metric = METRICS[pick("metric")] || METRICS.requests;
    let data;
    try {
      data = await api("GET", `${path}?bucket=${bucket}&by=${pick("by")}&count=${bucket === "hour" ? 24 : 14}`);
    } catch (err) {
      onError(err);
      return;
    }
    const groups = data.groups.map((g) => ({
      name: g.name,
      values: data.starts.map((_, i) => metric.parts.reduce((sum, p) => sum + g[p][i], 0)),
    }));
    const sum = (m) => data.totals[m].reduce((a, b) => a + b, 0);
    const share = data.cacheHitShare === null ? "—" : `${Math.round(data.cacheHitShare * 100)}%`;
    const legend = el(
      "ul",
      { class: "legend" },
      ...groups.map((g, i) =>
        el(
          "li",
          {},
          el("span", { class: `swatch c${i % 6}` }),
          `${g.name}: ${g.values.reduce((a, b) => a + b, 0).toLocaleString()}`,
        ),
      ),
    );
    replace(
      out,
      el(
        "p",
        { class: "small", "data-usage": "summary" },
        `${count(sum("requests"), "request")}, ${count(sum("errors"), "error")}, `,
        `${sum("inputTokens").toLocaleString()} input (${sum("cachedTokens").toLocaleString()} cached) and ${sum("outputTokens").toLocaleString()} output tokens; `,
        el("strong", {}, `cache hits ${share}`),
        " of input tokens.",
      ),
      data.groups.length
        ? barChart({ title: `${metric.label} per ${bucket}`, starts: data.starts, bucket, groups, unit: metric.unit })
        : el("p", { class: "muted" }, "No requests in this period."),
      legend,
    );
  }
  for (const select of root.querySelectorAll("select")) select.addEventListener("change", () => reload());
  return { reload };
}
