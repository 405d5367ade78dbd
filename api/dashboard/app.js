// The operators' dashboard: loads the registry and the city's indices from the HTTP API, keeps them current from
// the SSE stream (`/v1/stream`), and redraws the map, tables and charts in place. It talks only to the public
// endpoints of CONTRACT.md section 2.

import { Api, ApiError } from "./api.js";
import { renderChart } from "./chart.js";
import { applyLabels, language, LANGUAGES, QUANTITIES, quantityName, setLanguage, t, unit } from "./i18n.js";
import { SensorMap } from "./map.js";
import {
  feedText,
  renderAir,
  renderFeed,
  renderIndicators,
  renderLatest,
  renderQuality,
  renderRejections,
  renderSensorFacts,
  renderServiceLevels,
  renderTraffic,
} from "./panels.js";
import { renderAlarms, severityBySensor } from "./alarms.js";
import { EventStream } from "./stream.js";
import { fill, h, ISPU_COLOURS, time } from "./util.js";

const LANG_STORAGE = "livinglab.lang";
const CITY_STORAGE = "livinglab.city";
const FEED_LENGTH = 30;
const FULL_REFRESH_MS = 60_000;
const POLL_MS = 15_000;
const RANGES = { "24h": { window: "1m", ms: 86_400_000, pages: 3 }, "7d": { window: "1h", ms: 7 * 86_400_000, pages: 2 } };

const $ = (id) => document.getElementById(id);
const api = new Api();

const state = {
  cities: [],
  outlines: [],
  sensors: [],
  city: null,
  ispu: new Map(),
  traffic: new Map(),
  service: [],
  servicePeriod: "24h",
  quality: new Map(),
  rejections: { counts: new Map(), truncated: false },
  latest: new Map(),
  feed: [],
  selected: null,
  quantity: null,
  range: "24h",
  chartItems: [],
  streamStatus: "connecting",
  authProblem: null,
  updatedAt: null,
  errors: new Map(),
  alarms: new Map(),
  // Whether this key may acknowledge (learned from the answer to an attempt: the page cannot read its scope).
  canAcknowledge: true,
  alarmProblem: null,
};

// ---- loading -------------------------------------------------------------------------------------------------

/** Run `load`, recording a failure against `panel` (shown in the panel) and a rejected key in the banner. */
async function guarded(panel, load) {
  try {
    await load();
    state.errors.delete(panel);
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.isAuth) state.authProblem = api.key ? "keyRejected" : "keyNeeded";
    state.errors.set(panel, error);
    return false;
  }
}

/** The cities this key sees (`/v1/cities`), and the chosen one: kept from before, else stored, else the biggest. */
async function loadCities() {
  state.cities = (await api.list("/v1/cities", { limit: 1000 })).items;
  const names = state.cities.map((c) => c.city);
  if (!names.includes(state.city)) {
    const stored = readStored(CITY_STORAGE);
    const size = (c) => c.sensors.air + c.sensors.traffic;
    state.city = names.includes(stored) ? stored : [...state.cities].sort((a, b) => size(b) - size(a))[0]?.city ?? null;
  }
  const select = $("city-select");
  select.hidden = names.length < 2;
  fill(select, names.map((c) => h("option", { value: c, selected: c === state.city }, c)));
}

async function loadSensors() {
  await loadCities();
  state.sensors = state.city ? (await api.list("/v1/sensors", { city: state.city, limit: 1000 })).items : [];
  const first = state.sensors.find((s) => s.kind === "air") ?? state.sensors[0];
  const keep = state.sensors.some((s) => s.sensor_id === state.selected);
  selectSensor(keep ? state.selected : first?.sensor_id ?? null, { load: false, quantity: state.quantity });
}

function byId(items) {
  return new Map(items.map((i) => [i.sensor_id, i]));
}

let chartTicket = 0;

const loaders = {
  air: async () => {
    state.ispu = byId((await api.list("/v1/air/ispu", { city: state.city, limit: 1000 })).items);
  },
  traffic: async () => {
    state.traffic = byId((await api.list("/v1/traffic/segments", { city: state.city, limit: 1000 })).items);
  },
  service: async () => {
    const start = state.servicePeriod === "7d" ? new Date(Date.now() - 7 * 86_400_000).toISOString() : null;
    state.service = (await api.list("/v1/service-levels", { city: state.city, start, limit: 1000 })).items;
  },
  quality: async () => {
    state.quality = byId((await api.list("/v1/quality/sensors", { city: state.city, limit: 1000 })).items);
  },
  rejections: async () => {
    const { items, truncated } = await api.list("/v1/rejected", { limit: 500 }, { maxPages: 10 });
    const counts = new Map();
    // The chosen city's, and those whose topic names no city (a key that sees them sees every city: they are
    // shown whichever city is chosen).
    for (const item of items) {
      if (item.city === state.city || item.city === null) counts.set(item.reason, (counts.get(item.reason) ?? 0) + 1);
    }
    state.rejections = { counts, truncated };
  },
  alarms: async () => {
    const { items } = await api.list("/v1/alarms", { city: state.city, state: "open", limit: 500 }, { maxPages: 4 });
    state.alarms = new Map(items.map((a) => [a.alarm_id, a]));
  },
  latest: async () => {
    if (!state.selected) return;
    const sensorId = state.selected;
    const start = new Date(Date.now() - 30 * 60_000).toISOString();
    const { items } = await api.list(`/v1/sensors/${encodeURIComponent(state.selected)}/aggregates`, {
      window: "1m",
      start,
      limit: 1000,
    });
    const values = new Map();
    for (const item of items) {
      const old = values.get(item.quantity);
      if (!old || old.window_start <= item.window_start) values.set(item.quantity, item);
    }
    state.latest.set(sensorId, values);
  },
  chart: async () => {
    if (!state.selected || !state.quantity) return;
    // Choices can change while a request is out: only the answer to the latest request is kept.
    const ticket = ++chartTicket;
    const range = RANGES[state.range];
    const end = new Date();
    const { items } = await api.list(
      `/v1/sensors/${encodeURIComponent(state.selected)}/aggregates`,
      { window: range.window, quantity: state.quantity, start: new Date(end - range.ms).toISOString(), limit: 1000 },
      { maxPages: range.pages },
    );
    if (ticket === chartTicket) state.chartItems = items;
  },
};

const renderers = {
  air: () => renderAir($("air-rows"), { sensors: state.sensors, ispu: state.ispu, ...selection() }),
  traffic: () => renderTraffic($("traffic-rows"), { sensors: state.sensors, traffic: state.traffic, ...selection() }),
  service: () => {
    const districts = [...new Set(state.sensors.map((s) => s.district))];
    renderServiceLevels($("service-table"), { items: state.service, districts });
    renderIndicators($("service-indicators"), state.service);
  },
  quality: () => {
    renderQuality($("quality-rows"), $("quality-summary"), {
      sensors: state.sensors,
      quality: state.quality,
      now: Date.now(),
      ...selection(),
    });
    renderers.facts();
  },
  facts: () => renderSensorFacts($("lorawan-facts"), { sensor: selectedSensor(), quality: state.quality }),
  rejections: () => renderRejections($("rejections"), state.rejections),
  alarms: () =>
    renderAlarms($("alarm-list"), $("alarms-summary"), {
      alarms: state.alarms,
      canAcknowledge: state.canAcknowledge,
      onAcknowledge: acknowledge,
      onSelect: (id) => selectSensor(id),
      problem: state.alarmProblem,
    }),
  latest: () => renderLatest($("latest"), { sensor: selectedSensor(), latest: state.latest }),
  chart: () => drawChart(),
};

const PANEL_OF = { alarms: "alarms-panel", air: "air-panel", traffic: "traffic-panel", service: "service-panel", quality: "quality-panel", rejections: "quality-panel", latest: "detail-panel", chart: "detail-panel" };

async function load(...names) {
  await Promise.all(names.map((name) => guarded(name, loaders[name])));
  for (const name of names) renderers[name]();
  if (names.includes("air") || names.includes("traffic") || names.includes("alarms")) renderMap();
  renderStatus();
}

/** District outlines configured on the server (LIVINGLAB_DASHBOARD_DISTRICTS); none means derive them. */
async function loadOutlines() {
  const response = await fetch("/dashboard/districts.json", { cache: "no-cache" });
  if (response.ok) state.outlines = (await response.json()).items;
}

async function loadAll() {
  const ok = await guarded("sensors", loadSensors);
  renderMap();
  renderSelectors();
  if (!ok) {
    renderStatus();
    return;
  }
  await load("alarms", "air", "traffic", "service", "quality", "rejections", "latest", "chart");
  markUpdated();
}

const pending = new Map();

/** Reload `name` after `delayMs`, once, however many events asked for it in between. */
function scheduleLoad(name, delayMs) {
  if (pending.has(name)) return;
  pending.set(
    name,
    setTimeout(() => {
      pending.delete(name);
      load(name);
    }, delayMs),
  );
}

// ---- live updates --------------------------------------------------------------------------------------------

function pushFeed(type, item, window) {
  state.feed.unshift({ type, item, window, at: new Date().toISOString() });
  state.feed.length = Math.min(state.feed.length, FEED_LENGTH);
}

function known(sensorId) {
  return state.sensors.some((s) => s.sensor_id === sensorId);
}

function onAggregates(payload) {
  let chartChanged = false;
  for (const item of payload.items) {
    if (!known(item.sensor_id)) continue;
    if (payload.window === "1m") {
      if (!state.latest.has(item.sensor_id)) state.latest.set(item.sensor_id, new Map());
      const values = state.latest.get(item.sensor_id);
      const old = values.get(item.quantity);
      if (!old || old.window_start <= item.window_start) values.set(item.quantity, item);
      pushFeed("aggregates", item, payload.window);
    }
    if (item.sensor_id === state.selected && item.quantity === state.quantity && payload.window === RANGES[state.range].window) {
      const i = state.chartItems.findIndex((x) => x.window_start === item.window_start);
      if (i >= 0) state.chartItems[i] = { ...state.chartItems[i], ...item };
      else state.chartItems.push(item);
      chartChanged = true;
    }
  }
  if (payload.truncated) scheduleLoad("latest", 1000);
  renderers.latest();
  if (chartChanged) renderers.chart();
  scheduleLoad("quality", 15_000);
}

function onIspu(payload) {
  for (const item of payload.items) {
    if (!known(item.sensor_id)) continue;
    const old = state.ispu.get(item.sensor_id);
    if (old && old.window_end > item.window_end) continue;
    const colour = old && old.category === item.category ? old.colour_hex : ISPU_COLOURS[item.category];
    state.ispu.set(item.sensor_id, { ...old, ...item, colour_hex: colour });
    pushFeed("ispu", item);
  }
  renderers.air();
  renderMap();
  // The event lacks some fields (sub-indices, valid hours): the API's own answer follows shortly.
  scheduleLoad("air", payload.truncated ? 500 : 3000);
}

function onTraffic(payload) {
  for (const item of payload.items) {
    if (!known(item.sensor_id)) continue;
    const old = state.traffic.get(item.sensor_id);
    if (old && old.hour > item.hour) continue;
    state.traffic.set(item.sensor_id, { ...old, ...item });
    pushFeed("traffic", item);
  }
  renderers.traffic();
  renderMap();
  scheduleLoad("traffic", payload.truncated ? 500 : 3000);
}

function onAlarm(payload) {
  const alarm = payload?.alarm;
  if (!alarm || alarm.city !== state.city) return;
  if (alarm.state === "cleared") state.alarms.delete(alarm.alarm_id);
  else state.alarms.set(alarm.alarm_id, alarm);
  pushFeed("alarm", { ...alarm, event: payload.event });
  renderers.alarms();
  renderMap();
}

async function acknowledge(alarmId, note) {
  try {
    const alarm = await api.post(`/v1/alarms/${alarmId}/acknowledge`, note ? { note } : {});
    state.alarms.set(alarm.alarm_id, alarm);
    state.alarmProblem = null;
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) {
      state.canAcknowledge = false;
      state.alarmProblem = "alarmCannotAcknowledge";
    } else if (error instanceof ApiError && error.status === 409) {
      scheduleLoad("alarms", 0);
    } else {
      state.alarmProblem = "alarmAcknowledgeFailed";
    }
  }
  renderers.alarms();
}

function onEvent(type, data) {
  let payload;
  try {
    payload = JSON.parse(data);
  } catch {
    return;
  }
  // The server could not replay everything this page missed: start again from the HTTP API.
  if (type === "resync") {
    loadAll();
    return;
  }
  if (type === "alarm") {
    onAlarm(payload);
    renderFeed($("feed"), state.feed);
    markUpdated();
    return;
  }
  if (!Array.isArray(payload?.items)) return;
  if (type === "aggregates") onAggregates(payload);
  else if (type === "ispu") onIspu(payload);
  else if (type === "traffic") onTraffic(payload);
  else if (type === "aqi") payload.items.filter((i) => known(i.sensor_id)).forEach((i) => pushFeed("aqi", i));
  renderFeed($("feed"), state.feed);
  markUpdated();
}

let pollTimer = null;

function onStreamStatus(status) {
  state.streamStatus = status;
  if (status === "auth") state.authProblem = api.key ? "keyRejected" : "keyNeeded";
  // Without the stream, poll the indices so the page still moves.
  if (status === "open") {
    clearInterval(pollTimer);
    pollTimer = null;
  } else if (!pollTimer && status !== "connecting") {
    pollTimer = setInterval(() => load("alarms", "air", "traffic", "latest"), POLL_MS);
  }
  renderStatus();
}

const stream = new EventStream("/v1/stream", { headers: () => api.headers(), onEvent, onStatus: onStreamStatus });

// ---- rendering -----------------------------------------------------------------------------------------------

const map = new SensorMap($("map"), $("map-legend"), $("map-note"));

function selection() {
  return { selected: state.selected, onSelect: (id) => selectSensor(id) };
}

function selectedSensor() {
  return state.sensors.find((s) => s.sensor_id === state.selected) ?? null;
}

function renderMap() {
  // The map fits the chosen city: its sensors and its outlines (one without a city is drawn only when the key
  // sees a single city, since it cannot say whose it is).
  const outlines = state.outlines.filter((o) => (o.city ? o.city === state.city : state.cities.length < 2));
  map.render({
    sensors: state.sensors,
    outlines: outlines.length ? outlines : null,
    ispu: state.ispu,
    traffic: state.traffic,
    alarms: severityBySensor(state.alarms),
    ...selection(),
  });
}

function markUpdated() {
  state.updatedAt = new Date().toISOString();
  renderStatus();
}

function renderStatus() {
  $("updated-at").textContent = state.updatedAt ? `${t("updated")} ${time(state.updatedAt)}` : "";
  const pill = $("stream-status");
  const labels = { connecting: "streamConnecting", open: "streamOpen", reconnecting: "streamReconnecting", auth: "streamAuth", unavailable: "streamPolling" };
  pill.dataset.state = state.streamStatus;
  pill.textContent = t(labels[state.streamStatus] ?? "streamConnecting");
  const banner = $("banner");
  const authFailed = [...state.errors.values()].some((e) => e instanceof ApiError && e.isAuth);
  if (!authFailed && state.streamStatus !== "auth") state.authProblem = null;
  banner.hidden = !state.authProblem;
  banner.textContent = state.authProblem ? t(state.authProblem) : "";
  if (state.authProblem) $("key-form").hidden = false;
  for (const section of document.querySelectorAll(".panel")) section.querySelector(".panel-error")?.remove();
  for (const [name, error] of state.errors) {
    if (error instanceof ApiError && error.isAuth) continue;
    const panel = $(PANEL_OF[name] ?? "map-panel");
    if (panel.querySelector(".panel-error")) continue;
    panel.querySelector("h2").after(h("p", { class: "panel-error", role: "status" }, `${t("error")}: ${error.message}`));
  }
}

function renderSelectors() {
  const select = $("sensor-select");
  const groups = ["air", "traffic"].map((kind) =>
    h(
      "optgroup",
      { label: kind === "air" ? t("airQuality") : t("traffic") },
      state.sensors
        .filter((s) => s.kind === kind)
        .sort((a, b) => a.sensor_id.localeCompare(b.sensor_id))
        .map((s) => h("option", { value: s.sensor_id, selected: s.sensor_id === state.selected }, `${s.name ?? s.sensor_id} — ${s.district}`)),
    ),
  );
  fill(select, groups);
  const sensor = selectedSensor();
  fill(
    $("quantity-select"),
    (sensor ? QUANTITIES[sensor.kind] : []).map((q) => h("option", { value: q, selected: q === state.quantity }, quantityName(q))),
  );
  for (const button of document.querySelectorAll("[data-range]")) button.setAttribute("aria-pressed", String(button.dataset.range === state.range));
  for (const button of document.querySelectorAll("[data-period]")) button.setAttribute("aria-pressed", String(button.dataset.period === state.servicePeriod));
}

function drawChart() {
  const sensor = selectedSensor();
  const range = RANGES[state.range];
  const endMs = Date.now();
  renderChart($("chart"), {
    items: state.chartItems,
    window: range.window,
    startMs: endMs - range.ms,
    endMs,
    title: sensor ? `${sensor.name ?? sensor.sensor_id} · ${quantityName(state.quantity)}` : "",
    unitText: unit(state.quantity),
  });
}

function renderAll() {
  applyLabels();
  for (const button of document.querySelectorAll("[data-lang]")) button.setAttribute("aria-pressed", String(button.dataset.lang === language()));
  renderMap();
  renderSelectors();
  for (const render of Object.values(renderers)) render();
  renderFeed($("feed"), state.feed);
  renderStatus();
}

// ---- interaction ---------------------------------------------------------------------------------------------

function writeHash() {
  const params = new URLSearchParams();
  if (state.selected) params.set("sensor", state.selected);
  if (state.quantity) params.set("quantity", state.quantity);
  params.set("range", state.range);
  history.replaceState(null, "", `#${params}`);
}

function selectSensor(sensorId, { load: reload = true, quantity = null } = {}) {
  const changed = sensorId !== state.selected;
  state.selected = sensorId;
  const sensor = selectedSensor();
  const options = sensor ? QUANTITIES[sensor.kind] : [];
  if (quantity && options.includes(quantity)) state.quantity = quantity;
  else if (!options.includes(state.quantity)) state.quantity = sensor?.kind === "traffic" ? "kr" : options[0] ?? null;
  writeHash();
  if (!reload) return;
  if (changed) state.chartItems = [];
  renderSelectors();
  renderMap();
  renderers.air();
  renderers.traffic();
  renderers.quality();
  renderers.latest();
  load("latest", "chart");
}

function readStored(name) {
  try {
    return localStorage.getItem(name);
  } catch {
    return null;
  }
}

function writeStored(name, value) {
  try {
    localStorage.setItem(name, value);
  } catch {
    // Storage disabled (private mode): the choice lasts for this page only.
  }
}

function setLang(lang) {
  setLanguage(lang);
  writeStored(LANG_STORAGE, lang);
  renderAll();
}

function wire() {
  for (const button of document.querySelectorAll("[data-lang]")) button.addEventListener("click", () => setLang(button.dataset.lang));
  $("key-toggle").addEventListener("click", () => {
    const form = $("key-form");
    form.hidden = !form.hidden;
    if (!form.hidden) $("key-input").focus();
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    api.setKey($("key-input").value);
    $("key-input").value = "";
    $("key-form").hidden = true;
    state.authProblem = null;
    state.canAcknowledge = true;
    state.alarmProblem = null;
    stream.restart();
    loadAll();
  });
  $("key-clear").addEventListener("click", () => {
    api.setKey("");
    stream.restart();
    loadAll();
  });
  $("city-select").addEventListener("change", (event) => {
    state.city = event.target.value;
    writeStored(CITY_STORAGE, state.city);
    state.selected = null;
    loadAll();
  });
  $("sensor-select").addEventListener("change", (event) => selectSensor(event.target.value));
  $("quantity-select").addEventListener("change", (event) => {
    state.quantity = event.target.value;
    state.chartItems = [];
    writeHash();
    load("chart");
  });
  for (const button of document.querySelectorAll("[data-range]"))
    button.addEventListener("click", () => {
      state.range = button.dataset.range;
      state.chartItems = [];
      writeHash();
      renderSelectors();
      load("chart");
    });
  for (const button of document.querySelectorAll("[data-period]"))
    button.addEventListener("click", () => {
      state.servicePeriod = button.dataset.period;
      renderSelectors();
      load("service");
    });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      renderMap();
      drawChart();
    }, 150);
  });
}

function start() {
  const query = new URLSearchParams(window.location.search);
  const hash = new URLSearchParams(window.location.hash.slice(1));
  setLanguage([query.get("lang"), readStored(LANG_STORAGE)].find((l) => LANGUAGES.includes(l)) ?? "id");
  state.selected = hash.get("sensor");
  state.quantity = hash.get("quantity");
  if (RANGES[hash.get("range")]) state.range = hash.get("range");
  wire();
  renderAll();
  loadOutlines()
    .catch(() => {})
    .then(loadAll)
    .then(() => {
      document.body.dataset.ready = "true";
    });
  stream.start();
  setInterval(() => loadAll(), FULL_REFRESH_MS);
}

start();
