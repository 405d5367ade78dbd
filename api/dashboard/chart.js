// A time-series chart of windowed aggregates as SVG: the mean as a line, min–max as a band, gaps left open.

import { language, locale, t } from "./i18n.js";
import { fill, h, num, s } from "./util.js";

const WINDOW_MS = { "1m": 60_000, "1h": 3_600_000, "1d": 86_400_000 };

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  const f = raw / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
}

function yTicks(lo, hi) {
  if (lo === hi) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep((hi - lo) / 4);
  const start = Math.floor(lo / step) * step;
  const end = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { lo: start, hi: end, ticks, digits: Math.max(0, -Math.floor(Math.log10(step))) };
}

function xTicks(startMs, endMs) {
  const span = endMs - startMs;
  const stepMs = span > 3 * 86_400_000 ? 86_400_000 : span > 12 * 3_600_000 ? 4 * 3_600_000 : 3_600_000;
  // Align ticks to local midnight / hours so labels read as round times.
  const first = new Date(startMs);
  if (stepMs >= 86_400_000) first.setHours(24, 0, 0, 0);
  else first.setHours(first.getHours() + 1, 0, 0, 0);
  const ticks = [];
  // Walk whole hours (or days) and keep those on the step, so labels fall on 00:00, 04:00, ... whatever the start.
  const walkMs = stepMs >= 86_400_000 ? 86_400_000 : 3_600_000;
  for (let ms = first.getTime(); ms < endMs; ms += walkMs) {
    if (walkMs < stepMs && new Date(ms).getHours() % (stepMs / 3_600_000) !== 0) continue;
    ticks.push(ms);
  }
  const format =
    stepMs >= 86_400_000
      ? new Intl.DateTimeFormat(locale(), { day: "numeric", month: "short" })
      : new Intl.DateTimeFormat(locale(), { hour: "2-digit", minute: "2-digit" });
  return ticks.map((ms) => [ms, format.format(new Date(ms))]);
}

/**
 * Draw `items` (aggregates: window_start, mean, min, max) of one quantity over [startMs, endMs).
 * `title` names the series; `unitText` is the quantity's unit.
 */
export function renderChart(container, { items, window, startMs, endMs, title, unitText }) {
  const points = items
    .filter((i) => i.mean !== null && i.mean !== undefined)
    .map((i) => {
      const ms = new Date(i.window_start).getTime() + WINDOW_MS[window] / 2;
      return { ms, mean: i.mean, min: i.min ?? i.mean, max: i.max ?? i.mean, count: i.count };
    })
    .filter((p) => p.ms >= startMs && p.ms < endMs + WINDOW_MS[window])
    .sort((a, b) => a.ms - b.ms);
  container.dataset.points = String(points.length);
  container.dataset.window = window;
  if (!points.length) {
    fill(container, h("p", { class: "empty" }, t("chartEmpty")));
    return;
  }
  const width = Math.max(280, Math.round(container.clientWidth || 600));
  const height = width < 500 ? 200 : 260;
  const m = { left: 52, right: 12, top: 14, bottom: 28 };
  const { lo, hi, ticks, digits } = yTicks(Math.min(...points.map((p) => p.min)), Math.max(...points.map((p) => p.max)));
  const x = (ms) => m.left + ((ms - startMs) / (endMs - startMs)) * (width - m.left - m.right);
  const y = (v) => m.top + (1 - (v - lo) / (hi - lo || 1)) * (height - m.top - m.bottom);

  // Split into runs at missing windows, so a gap shows as a gap rather than a straight line across it.
  const runs = [];
  for (const p of points) {
    const run = runs[runs.length - 1];
    if (run && p.ms - run[run.length - 1].ms <= WINDOW_MS[window] * 1.5) run.push(p);
    else runs.push([p]);
  }
  const line = (run, key) => run.map((p, i) => `${i ? "L" : "M"}${x(p.ms).toFixed(1)},${y(p[key]).toFixed(1)}`).join("");
  const band = (run) =>
    `${line(run, "max")}${[...run]
      .reverse()
      .map((p) => `L${x(p.ms).toFixed(1)},${y(p.min).toFixed(1)}`)
      .join("")}Z`;
  const valueText = (v) => `${num(v, digits + 1)}${unitText ? ` ${unitText}` : ""}`;

  const grid = ticks.map((v) =>
    s(
      "g",
      { class: "tick y" },
      s("line", { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v) }),
      s("text", { x: m.left - 6, y: y(v), dy: "0.32em" }, num(v, digits)),
    ),
  );
  const xAxis = xTicks(startMs, endMs).map(([ms, label]) =>
    s("g", { class: "tick x" }, s("line", { x1: x(ms), x2: x(ms), y1: height - m.bottom, y2: height - m.bottom + 4 }), s("text", { x: x(ms), y: height - 8 }, label)),
  );
  const cursor = s("line", { class: "cursor", y1: m.top, y2: height - m.bottom, visibility: "hidden" });
  const tip = s("text", { class: "tip", x: m.left + 4, y: m.top + 12, visibility: "hidden" });
  const svg = s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title },
    s("title", {}, title),
    grid,
    s("line", { class: "axis", x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom }),
    xAxis,
    runs.map((run) => s("path", { class: "band", d: band(run) })),
    runs.map((run) => s("path", { class: "mean", d: line(run, "mean") })),
    runs.filter((r) => r.length === 1).map(([p]) => s("circle", { class: "dot", cx: x(p.ms), cy: y(p.mean), r: 2.5 })),
    cursor,
    tip,
  );
  const dateFormat = new Intl.DateTimeFormat(locale(), { dateStyle: "short", timeStyle: "short" });
  svg.addEventListener("pointermove", (event) => {
    const box = svg.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * width;
    let best = points[0];
    for (const p of points) if (Math.abs(x(p.ms) - px) < Math.abs(x(best.ms) - px)) best = p;
    cursor.setAttribute("x1", x(best.ms));
    cursor.setAttribute("x2", x(best.ms));
    cursor.setAttribute("visibility", "visible");
    const mean = language() === "id" ? "rata-rata" : "mean";
    tip.textContent = `${dateFormat.format(new Date(best.ms))} · ${mean} ${valueText(best.mean)} (${num(best.min, digits + 1)}–${num(best.max, digits + 1)})`;
    tip.setAttribute("visibility", "visible");
  });
  svg.addEventListener("pointerleave", () => {
    cursor.setAttribute("visibility", "hidden");
    tip.setAttribute("visibility", "hidden");
  });
  fill(
    container,
    svg,
    h(
      "p",
      { class: "chart-legend" },
      h("span", { class: "key mean" }),
      `${t("mean")} `,
      h("span", { class: "key band" }),
      `${t("minMax")}${unitText ? ` (${unitText})` : ""}`,
    ),
  );
}
