// The sensor map: district outlines, air stations coloured by ISPU category, traffic counters by level of
// service. Drawn as SVG from the registry's coordinates, with no map tiles and no network access.

import { areaCentroid, convexHull, labelPoint, makeProjection, pathOf, roundedHull, voronoiCells } from "./geometry.js";
import { ispuGloss, t } from "./i18n.js";
import { fill, h, ISPU_CATEGORIES, ISPU_COLOURS, LOS_COLOURS, NO_DATA_COLOUR, num, s, textOn } from "./util.js";

const DISTRICT_FILLS = ["#e3ebf6", "#e8f2df", "#f6ecdf", "#eee4f3", "#dff1ef", "#f5e3e3", "#f1f1dc", "#e6e9ed"];
// Voronoi by half-plane clipping costs O(n^2); past this many positions districts are drawn as hulls instead.
const MAX_VORONOI_SITES = 400;
// Marker and label sizes in screen pixels; converted to viewBox units at each render.
const MARKER_PX = 13;
const MARKER_FONT_PX = 11;
const LABEL_FONT_PX = 12;

function districtShapes(sensors, proj) {
  const sites = [];
  const siteDistrict = [];
  const seen = new Map();
  for (const sensor of sensors) {
    const key = `${sensor.lat.toFixed(6)},${sensor.lon.toFixed(6)}`;
    if (seen.has(key)) continue;
    seen.set(key, sites.length);
    sites.push(proj.project([sensor.lon, sensor.lat]));
    siteDistrict.push(sensor.district);
  }
  const byDistrict = new Map();
  const add = (district, poly) => {
    if (!byDistrict.has(district)) byDistrict.set(district, []);
    byDistrict.get(district).push(poly);
  };
  const borders = [];
  if (sites.length <= MAX_VORONOI_SITES) {
    const boundary = roundedHull(sites, proj.margin * 0.85);
    const cells = voronoiCells(sites, boundary);
    cells.forEach((cell, i) => {
      add(siteDistrict[i], cell.map((v) => v.p));
      cell.forEach((v, k) => {
        const next = cell[(k + 1) % cell.length];
        const outer = v.edge < 0;
        if (outer || (v.edge > i && siteDistrict[v.edge] !== siteDistrict[i])) borders.push([v.p, next.p, outer]);
      });
    });
  } else {
    for (const [district, points] of groupBy(sites, siteDistrict)) {
      const hull = roundedHull(convexHull(points), proj.margin * 0.4);
      add(district, hull);
      hull.forEach((p, k) => borders.push([p, hull[(k + 1) % hull.length], true]));
    }
  }
  return { byDistrict, borders };
}

function groupBy(points, keys) {
  const groups = new Map();
  points.forEach((p, i) => {
    if (!groups.has(keys[i])) groups.set(keys[i], []);
    groups.get(keys[i]).push(p);
  });
  return groups;
}

/**
 * Lay the map out once per set of sensor positions. `outlines`, when given, is a list of
 * `{district, rings: [[[lon, lat], ...], ...]}` drawn instead of the outlines derived from the sensors.
 */
function layout(sensors, outlines) {
  const points = sensors.map((x) => [x.lon, x.lat]);
  for (const o of outlines ?? []) for (const ring of o.rings) points.push(...ring);
  // Configured outlines already frame the city; derived ones need room around the outermost sensors.
  const proj = makeProjection(points.length ? points : [[106.8, -6.2]], { marginShare: outlines?.length ? 0.04 : 0.14 });
  let byDistrict;
  let borders = [];
  if (outlines?.length) {
    byDistrict = new Map(outlines.map((o) => [o.district, o.rings.map((ring) => ring.map(proj.project))]));
    for (const polys of byDistrict.values())
      for (const poly of polys) poly.forEach((p, k) => borders.push([p, poly[(k + 1) % poly.length], true]));
  } else {
    ({ byDistrict, borders } = districtShapes(sensors, proj));
  }
  const names = [...new Set([...sensors.map((x) => x.district), ...byDistrict.keys()])].sort();
  const districts = names.map((name, i) => {
    const polys = byDistrict.get(name) ?? [];
    let area = 0;
    let x = 0;
    let y = 0;
    for (const poly of polys) {
      const c = areaCentroid(poly);
      area += c.area;
      x += c.x * c.area;
      y += c.y * c.area;
    }
    const centroid = area > 0 ? [x / area, y / area] : null;
    return { name, polys, fill: DISTRICT_FILLS[i % DISTRICT_FILLS.length], centroid };
  });
  return { proj, districts, borders, derived: !outlines?.length };
}

export class SensorMap {
  constructor(svg, legend, note) {
    this.svg = svg;
    this.legend = legend;
    this.note = note;
    this.layoutKey = null;
    this.layout = null;
  }

  /**
   * Draw `sensors` (registry items) with `ispu` and `traffic` (Maps by sensor_id of the API's items).
   * `onSelect(sensor_id)` runs when a marker is clicked or activated with the keyboard.
   */
  render({ sensors, outlines, ispu, traffic, alarms = new Map(), selected, onSelect }) {
    const key = JSON.stringify([sensors.map((x) => [x.sensor_id, x.lat, x.lon, x.district]), outlines ?? null]);
    if (key !== this.layoutKey) {
      this.layout = layout(sensors, outlines);
      this.layoutKey = key;
      this.sensorsShown = sensors;
    }
    const { proj, districts, borders, derived } = this.layout;
    this.svg.setAttribute("viewBox", `0 0 ${proj.width} ${proj.height}`);
    this.svg.dataset.outlines = derived ? "derived" : "configured";
    // viewBox units per screen pixel, so markers and labels keep their size on any screen.
    const unit = proj.width / Math.max(240, this.svg.clientWidth || 600);
    const areas = s(
      "g",
      { class: "districts" },
      districts.map((d) =>
        s("path", { d: pathOf(d.polys), fill: d.fill, stroke: d.fill, "data-district": d.name }, s("title", {}, d.name)),
      ),
    );
    const lines = s("path", {
      class: "district-borders",
      d: borders.map(([a, b]) => `M${a[0].toFixed(1)},${a[1].toFixed(1)}L${b[0].toFixed(1)},${b[1].toFixed(1)}`).join(""),
    });
    const labels = s(
      "g",
      { class: "district-labels", "aria-hidden": "true" },
      this.labelPositions(unit)
        .filter(([, p]) => p)
        .map(([name, p]) => s("text", { x: p[0], y: p[1], dy: "0.35em", "font-size": LABEL_FONT_PX * unit }, name)),
    );
    // Traffic first, so an air station at the same spot stays on top and readable.
    const ordered = [...sensors].sort((a, b) => (a.kind === b.kind ? 0 : a.kind === "traffic" ? -1 : 1));
    const markers = s(
      "g",
      { class: "sensors" },
      ordered.map((sensor) => this.marker(sensor, proj.project([sensor.lon, sensor.lat]), unit, { ispu, traffic, alarms, selected, onSelect })),
    );
    fill(this.svg, s("title", {}, t("mapLabel")), areas, lines, labels, markers);
    this.renderLegend(derived);
  }

  /** Where each district's name goes: clear of markers and borders when there is room, else its centroid. */
  labelPositions(unit) {
    const key = `${this.layoutKey}|${unit.toFixed(3)}`;
    if (this.labelKey === key) return this.labels;
    const { proj, districts } = this.layout;
    const markers = this.sensorsShown.map((x) => proj.project([x.lon, x.lat]));
    this.labels = districts.map((d) => {
      const width = d.name.length * LABEL_FONT_PX * 0.6 * unit;
      const free = markers.length <= MAX_VORONOI_SITES ? labelPoint(d.polys, markers, width) : null;
      return [d.name, free ?? d.centroid];
    });
    this.labelKey = key;
    return this.labels;
  }

  marker(sensor, [x, y], unit, { ispu, traffic, alarms, selected, onSelect }) {
    const name = sensor.name && sensor.name !== sensor.sensor_id ? `${sensor.name} (${sensor.sensor_id})` : sensor.sensor_id;
    const dataset = { sensorId: sensor.sensor_id, kind: sensor.kind, district: sensor.district };
    let shape;
    let text;
    let colour;
    let summary;
    const stroke = (sensor.sensor_id === selected ? 3.5 : 2) * unit;
    if (sensor.kind === "air") {
      const entry = ispu.get(sensor.sensor_id);
      const item = entry && entry.ispu !== null && entry.ispu !== undefined ? entry : null;
      colour = item ? item.colour_hex ?? ISPU_COLOURS[item.category] ?? NO_DATA_COLOUR : NO_DATA_COLOUR;
      text = item ? String(item.ispu) : "–";
      if (item) Object.assign(dataset, { ispu: item.ispu ?? "", category: item.category ?? "", colour });
      summary = item ? `ISPU ${item.ispu} ${item.category}` : t("noData");
      shape = s("circle", { r: MARKER_PX * unit, fill: colour, "stroke-width": stroke });
    } else {
      const item = traffic.get(sensor.sensor_id);
      colour = item ? LOS_COLOURS[item.los] ?? NO_DATA_COLOUR : NO_DATA_COLOUR;
      text = item?.los ?? "–";
      if (item) Object.assign(dataset, { los: item.los ?? "", dj: item.degree_of_saturation ?? "", colour });
      summary = item ? `LOS ${item.los}, DJ ${num(item.degree_of_saturation, 2)}` : t("noData");
      const r = (MARKER_PX - 1.5) * unit;
      shape = s("rect", { x: -r, y: -r, width: 2 * r, height: 2 * r, rx: 3 * unit, fill: colour, "stroke-width": stroke });
    }
    const severity = alarms.get(sensor.sensor_id);
    if (severity) {
      dataset.alarm = severity;
      summary += ` — ${t("alarm")}: ${t(`severity_${severity}`)}`;
    }
    const label = `${name} — ${sensor.district}: ${summary}`;
    const activate = () => onSelect(sensor.sensor_id);
    return s(
      "g",
      {
        class: `sensor ${sensor.kind}${sensor.sensor_id === selected ? " selected" : ""}`,
        transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`,
        tabindex: 0,
        role: "button",
        "aria-label": label,
        dataset,
        onclick: activate,
        onkeydown: (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            activate();
          }
        },
      },
      s("title", {}, label),
      severity ? s("circle", { class: `alarm-ring ${severity}`, r: (MARKER_PX + 5) * unit, "stroke-width": 3 * unit }) : null,
      shape,
      s("text", { class: "marker-text", fill: textOn(colour), dy: "0.35em", "font-size": MARKER_FONT_PX * unit }, text),
    );
  }

  renderLegend(derived) {
    const swatch = (colour, round) => h("span", { class: `swatch${round ? " round" : ""}`, "data-colour": colour });
    const ispuItems = ISPU_CATEGORIES.map((category) => {
      const gloss = ispuGloss(category);
      return h("li", {}, swatch(ISPU_COLOURS[category], true), category, gloss ? h("small", {}, ` (${gloss})`) : null);
    });
    const losItems = Object.entries(LOS_COLOURS).map(([los, colour]) => h("li", {}, swatch(colour, false), los));
    fill(
      this.legend,
      h("div", {}, h("strong", {}, t("legendIspu")), h("ul", {}, ispuItems)),
      h("div", {}, h("strong", {}, t("legendLos")), h("ul", {}, losItems)),
      h("div", {}, h("ul", {}, h("li", {}, swatch(NO_DATA_COLOUR, true), t("noData")))),
    );
    // Swatch colours are set through the CSSOM: the page's content security policy forbids style attributes.
    for (const el of this.legend.querySelectorAll(".swatch")) el.style.background = el.dataset.colour;
    this.note.textContent = derived ? t("outlinesDerived") : t("outlinesGiven");
  }
}
