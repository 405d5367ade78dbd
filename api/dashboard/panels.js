// The dashboard's tables and lists: air quality, traffic, service levels, data quality, the live feed, and the
// latest values and LoRaWAN facts of the chosen sensor. Each function redraws one panel from the page state.

import { indicatorName, ispuGloss, quantityName, reasonName, t, unit } from "./i18n.js";
import {
  dateTime,
  fill,
  h,
  ISPU_COLOURS,
  LOS_COLOURS,
  meetsLos,
  NO_DATA_COLOUR,
  num,
  pct,
  relative,
  textOn,
  time,
} from "./util.js";

const SERVICES = ["air", "traffic", "data"];
const SERVICE_LABELS = { air: "serviceAir", traffic: "serviceTraffic", data: "serviceData" };
const MIN_STALE_S = 600;
const STALE_INTERVALS = 5;

/** Colour a badge through the CSSOM (the content security policy forbids style attributes). */
function paint(el, colour) {
  el.style.background = colour;
  el.style.color = textOn(colour);
  return el;
}

function sensorCell(sensor) {
  const name = sensor.name && sensor.name !== sensor.sensor_id ? sensor.name : null;
  return h("td", { class: "sensor-cell" }, name ?? sensor.sensor_id, name ? h("small", {}, sensor.sensor_id) : null);
}

function byDistrict(a, b) {
  return a.district.localeCompare(b.district) || a.sensor_id.localeCompare(b.sensor_id);
}

function selectable(row, sensorId, selected, onSelect) {
  row.dataset.sensorId = sensorId;
  if (sensorId === selected) row.classList.add("selected");
  row.addEventListener("click", () => onSelect(sensorId));
  return row;
}

export function renderAir(tbody, { sensors, ispu, selected, onSelect }) {
  const rows = sensors
    .filter((x) => x.kind === "air")
    .sort(byDistrict)
    .map((sensor) => {
      // An entry with a null ISPU (no parameter with 18 valid hours yet) shows as no data.
      const entry = ispu.get(sensor.sensor_id);
      const item = entry && entry.ispu !== null && entry.ispu !== undefined ? entry : null;
      const colour = item ? item.colour_hex ?? ISPU_COLOURS[item.category] ?? NO_DATA_COLOUR : NO_DATA_COLOUR;
      const row = h(
        "tr",
        {},
        sensorCell(sensor),
        h("td", { class: "num" }, paint(h("span", { class: "badge ispu" }, item ? String(item.ispu) : "—"), colour)),
        h(
          "td",
          { class: "category" },
          item ? item.category : t("noData"),
          item && ispuGloss(item.category) ? h("small", {}, ispuGloss(item.category)) : null,
        ),
        h("td", {}, sensor.district),
        h("td", {}, item?.critical_parameter ? quantityName(item.critical_parameter) : "—"),
        h("td", {}, dateTime(item?.window_end)),
        h("td", { class: "num" }, entry?.hours_valid !== undefined && entry?.hours_valid !== null ? `${entry.hours_valid}/24` : "—"),
      );
      if (item) Object.assign(row.dataset, { ispu: item.ispu, category: item.category });
      return selectable(row, sensor.sensor_id, selected, onSelect);
    });
  fill(tbody, rows);
}

export function renderTraffic(tbody, { sensors, traffic, selected, onSelect }) {
  const rows = sensors
    .filter((x) => x.kind === "traffic")
    .sort(byDistrict)
    .map((sensor) => {
      const item = traffic.get(sensor.sensor_id);
      const meets = typeof item?.los_met === "boolean" ? item.los_met : meetsLos(item?.los, item?.los_target);
      const road = [sensor.road_type, sensor.road_function?.replaceAll("_", " ")].filter(Boolean).join(" · ");
      const row = h(
        "tr",
        {},
        sensorCell(sensor),
        h("td", {}, paint(h("span", { class: "badge los" }, item?.los ?? "—"), LOS_COLOURS[item?.los] ?? NO_DATA_COLOUR)),
        h("td", { class: "num" }, num(item?.degree_of_saturation, 2)),
        h("td", {}, item?.los_target ?? "—"),
        h(
          "td",
          { class: meets === null ? "" : meets ? "ok" : "bad", title: meets === null ? "" : t(meets ? "compliant" : "notCompliant") },
          meets === null ? "—" : meets ? "✓" : "✗",
        ),
        h("td", {}, sensor.district),
        h("td", {}, road || "—"),
        h("td", { class: "num" }, num(item?.flow_veh_h)),
        h("td", { class: "num" }, num(item?.flow_pcu_h)),
        h("td", { class: "num" }, num(item?.capacity_pcu_h)),
        h("td", { class: "num" }, num(item?.mean_speed_kmh, 1)),
        h("td", {}, dateTime(item?.hour)),
      );
      if (item) Object.assign(row.dataset, { los: item.los, dj: item.degree_of_saturation });
      return selectable(row, sensor.sensor_id, selected, onSelect);
    });
  fill(tbody, rows);
}

export function renderServiceLevels(table, { items, districts }) {
  const cells = new Map();
  for (const item of items) cells.set(`${item.district}\u0000${item.service}`, item);
  const names = [...new Set([...districts, ...items.map((i) => i.district)])].sort();
  const indicators = new Map(items.map((i) => [i.service, i.indicator]));
  const head = h(
    "tr",
    {},
    h("th", {}, t("district")),
    SERVICES.map((service) =>
      h("th", { title: indicators.has(service) ? indicatorName(indicators.get(service)) : "" }, t(SERVICE_LABELS[service])),
    ),
  );
  const rows = names.map((district) =>
    h(
      "tr",
      { dataset: { district } },
      h("th", { scope: "row" }, district),
      SERVICES.map((service) => {
        const item = cells.get(`${district}\u0000${service}`);
        if (!item || item.achieved === null || item.achieved === undefined) return h("td", { class: "na" }, "—");
        const state = item.compliant ? "ok" : "bad";
        return h(
          "td",
          {
            class: `sl ${state}`,
            title: `${indicatorName(item.indicator)}: ${t(item.compliant ? "compliant" : "notCompliant")}`,
            dataset: { service, achieved: item.achieved, target: item.target, compliant: item.compliant },
          },
          h("span", { class: "mark" }, item.compliant ? "✓" : "✗"),
          h("strong", {}, pct(item.achieved)),
          h("small", {}, ` / ${t("target").toLowerCase()} ${pct(item.target, 0)}`),
        );
      }),
    ),
  );
  fill(table, h("thead", {}, head), h("tbody", {}, rows));
}

export function renderIndicators(list, items) {
  const seen = new Map(items.map((i) => [i.indicator, i.service]));
  fill(
    list,
    [...seen].map(([indicator, service]) => h("li", {}, h("strong", {}, `${t(SERVICE_LABELS[service] ?? service)}: `), indicatorName(indicator))),
  );
}

function staleAfterS(sensor) {
  return Math.max(MIN_STALE_S, STALE_INTERVALS * (sensor.interval_s ?? 60));
}

export function renderQuality(tbody, summary, { sensors, quality, now, selected, onSelect }) {
  const rows = sensors.map((sensor) => {
    const q = quality.get(sensor.sensor_id);
    const ageS = q?.last_seen ? (now - new Date(q.last_seen).getTime()) / 1000 : Infinity;
    return { sensor, q, stale: ageS > staleAfterS(sensor) };
  });
  rows.sort((a, b) => Number(b.stale) - Number(a.stale) || a.sensor.sensor_id.localeCompare(b.sensor.sensor_id));
  const stale = rows.filter((r) => r.stale).length;
  summary.textContent = t("staleSummary", { stale, total: rows.length, minutes: MIN_STALE_S / 60 });
  summary.classList.toggle("bad", stale > 0);
  fill(
    tbody,
    rows.map(({ sensor, q, stale: isStale }) => {
      const row = h(
        "tr",
        { class: isStale ? "stale" : "" },
        sensorCell(sensor),
        h("td", {}, h("span", { class: `pill ${isStale ? "bad" : "ok"}` }, t(isStale ? "stale" : "live"))),
        h("td", { title: dateTime(q?.last_seen) }, q?.last_seen ? relative(q.last_seen, now) : t("never")),
        h("td", {}, sensor.district),
        h("td", { class: "num" }, pct(q?.completeness_24h)),
        h("td", { class: "num" }, q ? `${num(q.latency_p50_s, 1)} / ${num(q.latency_p95_s, 1)}` : "—"),
        h("td", { class: "num" }, num(q?.accepted_24h)),
        h("td", { class: "num" }, num(q?.rejected_24h)),
        h("td", { class: "num" }, num(q?.duplicates_24h)),
        h("td", { class: "num" }, num(q?.late_24h)),
        h("td", { class: `num${q?.payloads_dropped_24h ? " bad" : ""}` }, num(q?.payloads_dropped_24h)),
      );
      row.dataset.stale = String(isStale);
      return selectable(row, sensor.sensor_id, selected, onSelect);
    }),
  );
}

export function renderRejections(list, { counts, truncated }) {
  const entries = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  if (!entries.length) {
    fill(list, h("li", { class: "empty" }, t("noRejections")));
    return;
  }
  const top = entries[0][1];
  fill(
    list,
    entries.map(([reason, count]) => {
      const bar = h("span", { class: "bar" });
      bar.style.width = `${Math.max(2, (count / top) * 100)}%`;
      return h(
        "li",
        { dataset: { reason, count } },
        h("span", { class: "reason" }, reasonName(reason), h("code", {}, reason)),
        h("span", { class: "bar-track" }, bar),
        h("span", { class: "num" }, truncated ? `≥ ${num(count)}` : num(count)),
      );
    }),
  );
}

function valueWithUnit(quantity, value) {
  const u = unit(quantity);
  return `${num(value, 1)}${u ? ` ${u}` : ""}`;
}

export function renderLatest(list, { sensor, latest }) {
  if (!sensor) {
    fill(list);
    return;
  }
  const values = latest.get(sensor.sensor_id) ?? new Map();
  const items = [...values].sort((a, b) => a[0].localeCompare(b[0]));
  fill(
    list,
    items.length
      ? items.map(([quantity, agg]) =>
          h(
            "li",
            { dataset: { sensorId: sensor.sensor_id, quantity, mean: agg.mean, windowStart: agg.window_start } },
            h("span", { class: "q" }, quantityName(quantity)),
            h("strong", {}, valueWithUnit(quantity, agg.mean)),
            h("small", {}, time(agg.window_start)),
          ),
        )
      : h("li", { class: "empty" }, t("noData")),
  );
}

function fieldTarget(target) {
  if (target === null) return t("ignoredMember");
  if (typeof target === "string") return quantityName(target);
  return target.unit ? `${quantityName(target.quantity)} (${target.unit})` : quantityName(target.quantity);
}

/** A LoRaWAN sensor's DevEUI, field map and the frames and codec members of its last 24 hours (hidden otherwise). */
export function renderSensorFacts(box, { sensor, quality }) {
  const list = box.querySelector("dl");
  if (!sensor?.dev_eui) {
    box.hidden = true;
    fill(list);
    return;
  }
  const q = quality.get(sensor.sensor_id);
  const entries = Object.entries(sensor.field_map ?? {});
  box.hidden = false;
  fill(
    list,
    h("dt", {}, t("devEui")),
    h("dd", { dataset: { fact: "dev_eui" } }, h("code", {}, sensor.dev_eui)),
    h("dt", {}, t("fieldMap")),
    h(
      "dd",
      { dataset: { fact: "field_map" } },
      entries.length ? entries.map(([member, target]) => `${member} → ${fieldTarget(target)}`).join(", ") : t("fieldMapNone"),
    ),
    h("dt", {}, t("framesMissed24h")),
    h("dd", { dataset: { fact: "frames_missed", value: q?.frames_missed_24h ?? "" } }, num(q?.frames_missed_24h)),
    h("dt", {}, t("membersIgnored24h")),
    h("dd", { dataset: { fact: "ignored_members", value: q?.ignored_members_24h ?? "" } }, num(q?.ignored_members_24h)),
  );
}

/** One line of the live feed for an event item. */
export function feedText(type, item, window) {
  if (type === "aggregates")
    return t("feedAggregate", { quantity: quantityName(item.quantity), window, value: valueWithUnit(item.quantity, item.mean) });
  if (type === "ispu") return t("feedIspu", { ispu: item.ispu, category: item.category });
  if (type === "traffic") return t("feedTraffic", { los: item.los, dj: num(item.degree_of_saturation, 2) });
  if (type === "aqi") return t("feedAqi", { aqi: item.aqi });
  if (type === "alarm") return t(`feedAlarm_${item.event}`, { rule: item.rule_name, value: num(item.last_value, 2) });
  return type;
}

export function renderFeed(list, feed) {
  fill(
    list,
    feed.length
      ? feed.map((entry) =>
          h(
            "li",
            { dataset: { type: entry.type, sensorId: entry.item.sensor_id, quantity: entry.item.quantity ?? "", mean: entry.item.mean ?? "" } },
            h("time", { datetime: entry.at }, time(entry.at)),
            h("span", { class: "who" }, entry.item.sensor_id),
            h("span", {}, feedText(entry.type, entry.item, entry.window)),
          ),
        )
      : h("li", { class: "empty" }, t("feedEmpty")),
  );
}
