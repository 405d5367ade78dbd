// Small DOM and formatting helpers shared by the dashboard modules. Text goes in through textContent only, so
// nothing a sensor name or a rejection detail holds is ever parsed as markup.

import { locale } from "./i18n.js";

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h("td", {class: "num"}, "42"). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function num(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return new Intl.NumberFormat(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(
    value,
  );
}

export function pct(share, digits = 1) {
  if (share === null || share === undefined) return "—";
  return `${num(share * 100, digits)} %`;
}

export function dateTime(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(locale(), { dateStyle: "short", timeStyle: "short" }).format(new Date(iso));
}

export function time(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(locale(), { hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(
    new Date(iso),
  );
}

export function relative(iso, now = Date.now()) {
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "auto" });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}

// Indonesian ISPU palette (reference/ispu_2020.csv). The API sends `colour_hex`; this table colours values that
// arrived through the live stream before the next fetch brings the API's own colour.
export const ISPU_COLOURS = {
  Baik: "#00cc00",
  Sedang: "#0000cc",
  "Tidak Sehat": "#cccc00",
  "Sangat Tidak Sehat": "#cc0000",
  Berbahaya: "#000000",
};

export const ISPU_CATEGORIES = Object.keys(ISPU_COLOURS);

export const LOS_COLOURS = {
  A: "#1b7837",
  B: "#5aae61",
  C: "#d9c200",
  D: "#f28e2b",
  E: "#d62728",
  F: "#67001f",
};

export const NO_DATA_COLOUR = "#9e9e9e";

/** Black or white, whichever reads better on `hex`. */
export function textOn(hex) {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex ?? "");
  if (!m) return "#000000";
  const [r, g, b] = m.slice(1).map((x) => parseInt(x, 16) / 255);
  const lin = (c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
  const luminance = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  return luminance > 0.35 ? "#000000" : "#ffffff";
}

/** True when level of service `los` is at least as good as `target` (A best, F worst). */
export function meetsLos(los, target) {
  if (!los || !target) return null;
  return los <= target;
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}
