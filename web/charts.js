/**
 * Small SVG charts drawn by the page itself (no library): built with createElementNS, coloured
 * by CSS classes (so both themes apply and the CSP needs no inline style), with axes, labels
 * and native tooltips (<title>).
 */

const NS = "http://www.w3.org/2000/svg";
const W = 640;
const H = 200;
const PAD = { left: 40, right: 12, top: 12, bottom: 26 };

/**
 * Create an SVG element.
 * @param {string} tag
 * @param {Record<string, string|number>} [attrs]
 * @param {...(Node|string)} children
 * @returns {SVGElement}
 */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

/**
 * Format a Unix time for an axis: the hour for short ranges, the day otherwise.
 * @param {number} ts
 * @param {number} span seconds shown
 * @returns {string}
 */
function tick(ts, span) {
  const d = new Date(ts * 1000);
  if (span <= 2 * 86400) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleDateString([], { month: "short", day: "numeric" });
}

/**
 * A line chart over time.
 * @param {{
 *   title: string,
 *   xMin: number, xMax: number, yMax: number, yUnit: string,
 *   series: {name: string, cls: string, points: [number, number|null][], step?: boolean}[],
 *   marks?: {x: number, label: string, cls?: string}[],
 * }} spec
 * @returns {SVGElement}
 */
export function lineChart(spec) {
  const { xMin, xMax, yMax } = spec;
  const span = Math.max(1, xMax - xMin);
  const x = (t) => PAD.left + ((t - xMin) / span) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (Math.max(0, Math.min(yMax, v)) / yMax) * (H - PAD.top - PAD.bottom);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-label": spec.title });
  root.append(svg("title", {}, spec.title));
  // Grid and y labels at 0, half and the top.
  for (const v of [0, yMax / 2, yMax]) {
    root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    root.append(
      svg(
        "text",
        { x: PAD.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" },
        `${+v.toFixed(1)}${spec.yUnit}`,
      ),
    );
  }
  for (const t of [xMin, xMin + span / 2, xMax]) {
    const anchor = t === xMin ? "start" : t === xMax ? "end" : "middle";
    root.append(svg("text", { x: x(t), y: H - 8, class: "axis", "text-anchor": anchor }, tick(t, span)));
  }
  for (const mark of spec.marks || []) {
    if (mark.x < xMin || mark.x > xMax) continue;
    const line = svg("line", {
      x1: x(mark.x),
      x2: x(mark.x),
      y1: PAD.top,
      y2: H - PAD.bottom,
      class: `mark ${mark.cls || ""}`,
    });
    line.append(svg("title", {}, mark.label));
    root.append(line);
  }
  for (const s of spec.series) {
    let d = "";
    let prev = null;
    for (const [t, v] of s.points) {
      if (v === null || v === undefined || t < xMin - span) {
        prev = null;
        continue;
      }
      const px = x(Math.max(xMin, t));
      const py = y(v);
      if (prev === null) d += `M${px.toFixed(1)},${py.toFixed(1)}`;
      else if (s.step) d += `H${px.toFixed(1)}V${py.toFixed(1)}`;
      else d += `L${px.toFixed(1)},${py.toFixed(1)}`;
      prev = py;
    }
    if (prev !== null && s.step) d += `H${x(xMax).toFixed(1)}`;
    if (d) root.append(svg("path", { d, class: `line ${s.cls}` }, svg("title", {}, s.name)));
    for (const [t, v] of s.points) {
      if (v === null || v === undefined || t < xMin) continue;
      const dot = svg("circle", { cx: x(t), cy: y(v), r: 3, class: `dot ${s.cls}` });
      dot.append(
        svg("title", {}, `${s.name}: ${+v.toFixed(2)}${spec.yUnit} at ${new Date(t * 1000).toLocaleString()}`),
      );
      root.append(dot);
    }
  }
  return root;
}

/**
 * A legend for a chart's series.
 * @param {{name: string, cls: string}[]} series
 * @returns {HTMLElement}
 */
export function legend(series) {
  const list = document.createElement("ul");
  list.className = "legend";
  for (const s of series) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch ${s.cls}`;
    item.append(swatch, document.createTextNode(s.name));
    list.append(item);
  }
  return list;
}

/**
 * A stacked bar chart: one bar per bucket, one coloured part per group, a tooltip per part.
 * @param {{
 *   title: string,
 *   starts: number[], bucket: "hour"|"day",
 *   groups: {name: string, values: number[]}[],
 *   unit: string,
 * }} spec
 * @returns {SVGElement}
 */
export function barChart(spec) {
  const n = spec.starts.length;
  const totals = spec.starts.map((_, i) => spec.groups.reduce((sum, g) => sum + (g.values[i] || 0), 0));
  const top = Math.max(1, ...totals);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(1, n);
  const barW = Math.max(1, slot * 0.7);
  const y = (v) => H - PAD.bottom - (v / top) * plotH;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img", "aria-label": spec.title });
  root.append(svg("title", {}, spec.title));
  for (const v of [0, top / 2, top]) {
    root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: PAD.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, compact(v)));
  }
  const label = (ts) => {
    const d = new Date(ts * 1000);
    return spec.bucket === "hour"
      ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : d.toLocaleDateString([], { month: "short", day: "numeric", timeZone: "UTC" });
  };
  const every = Math.max(1, Math.ceil(n / 8));
  spec.starts.forEach((ts, i) => {
    const x = PAD.left + i * slot + (slot - barW) / 2;
    let base = 0;
    spec.groups.forEach((g, gi) => {
      const v = g.values[i] || 0;
      if (!v) return;
      const rect = svg("rect", {
        x: x.toFixed(1),
        y: y(base + v).toFixed(1),
        width: barW.toFixed(1),
        height: Math.max(0.5, y(base) - y(base + v)).toFixed(1),
        class: `seg c${gi % 6}`,
      });
      rect.append(svg("title", {}, `${label(ts)}: ${g.name} ${v.toLocaleString()} ${spec.unit}`));
      root.append(rect);
      base += v;
    });
    if (i % every === 0)
      root.append(
        svg("text", { x: (x + barW / 2).toFixed(1), y: H - 8, class: "axis", "text-anchor": "middle" }, label(ts)),
      );
  });
  return root;
}

/**
 * Write a number short: 1200 -> "1.2k", 3400000 -> "3.4M".
 * @param {number} v
 * @returns {string}
 */
export function compact(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return String(+v.toFixed(1));
}
