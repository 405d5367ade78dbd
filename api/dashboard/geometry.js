// Plane geometry for the offline map: an equirectangular projection, convex hulls and Voronoi cells by
// half-plane clipping. District outlines are derived from sensor positions when the registry has none: each
// sensor gets the part of the city nearer to it than to any other sensor, and a district is the union of its
// sensors' cells, inside a rounded hull around all sensors.

const DEG = Math.PI / 180;

/** Project [lon, lat] pairs into a `width`-wide viewBox that holds `points` with a margin. */
export function makeProjection(points, { width = 1000, minAspect = 0.5, maxAspect = 1.0, marginShare = 0.14 } = {}) {
  const lats = points.map((p) => p[1]);
  const lons = points.map((p) => p[0]);
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos(midLat * DEG);
  const xs = lons.map((lon) => lon * k);
  const ys = lats.map((lat) => -lat);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const span = Math.max(x1 - x0, y1 - y0, 0.004);
  const margin = span * marginShare;
  x0 -= margin;
  x1 += margin;
  y0 -= margin;
  y1 += margin;
  let w = Math.max(x1 - x0, span * 0.3);
  let hgt = Math.max(y1 - y0, span * 0.3);
  // Keep the map's shape within limits by widening the narrow side around its centre.
  if (hgt / w < minAspect) {
    const grow = w * minAspect - hgt;
    y0 -= grow / 2;
    hgt += grow;
  } else if (hgt / w > maxAspect) {
    const grow = hgt / maxAspect - w;
    x0 -= grow / 2;
    w += grow;
  }
  const scale = width / w;
  const height = Math.round(hgt * scale);
  return {
    width,
    height,
    /** The projected margin, in viewBox units, kept around the sensors. */
    margin: margin * scale,
    project: ([lon, lat]) => [(lon * k - x0) * scale, (-lat - y0) * scale],
  };
}

function cross(o, a, b) {
  return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
}

/** The convex hull of `points`, counter-clockwise in screen coordinates (Andrew's monotone chain). */
export function convexHull(points) {
  const pts = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (pts.length < 3) return pts;
  const lower = [];
  for (const p of pts) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper = [];
  for (const p of pts.reverse()) {
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], p) <= 0) upper.pop();
    upper.push(p);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

/** The convex hull of discs of radius `r` around `points` (each disc drawn as a 16-gon). */
export function roundedHull(points, r) {
  const ring = [];
  for (const [x, y] of points) {
    for (let i = 0; i < 16; i += 1) {
      const a = (i / 16) * 2 * Math.PI;
      ring.push([x + r * Math.cos(a), y + r * Math.sin(a)]);
    }
  }
  return convexHull(ring);
}

/**
 * Clip a convex polygon to the half-plane of points nearer to `site` than to `other`.
 * Vertices carry `edge`, the label of the edge that starts at them: the index of the neighbouring site whose
 * bisector made that edge, or -1 for the outer boundary.
 */
function clipToSite(polygon, site, other, otherIndex) {
  const nx = other[0] - site[0];
  const ny = other[1] - site[1];
  const c = (nx * (site[0] + other[0])) / 2 + (ny * (site[1] + other[1])) / 2;
  const inside = (p) => nx * p[0] + ny * p[1] <= c;
  const cut = (a, b) => {
    const da = nx * a[0] + ny * a[1] - c;
    const db = nx * b[0] + ny * b[1] - c;
    const t = da / (da - db);
    return [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
  };
  const out = [];
  for (let i = 0; i < polygon.length; i += 1) {
    const a = polygon[i];
    const b = polygon[(i + 1) % polygon.length];
    const ina = inside(a.p);
    const inb = inside(b.p);
    if (ina) out.push(a);
    if (ina && !inb) out.push({ p: cut(a.p, b.p), edge: otherIndex });
    else if (!ina && inb) out.push({ p: cut(a.p, b.p), edge: a.edge });
  }
  return out;
}

/**
 * Voronoi cells of `sites` (projected points) inside the convex polygon `boundary`.
 * Returns, per site, its cell as [{p: [x, y], edge: neighbour index or -1}, ...].
 */
export function voronoiCells(sites, boundary) {
  const start = boundary.map((p) => ({ p, edge: -1 }));
  return sites.map((site, i) => {
    let cell = start;
    // Nearer sites cut more, so clipping by them first keeps the polygon small for the rest.
    const order = sites
      .map((other, j) => [j, (other[0] - site[0]) ** 2 + (other[1] - site[1]) ** 2])
      .filter(([j, d]) => j !== i && d > 0)
      .sort((a, b) => a[1] - b[1]);
    for (const [j] of order) {
      cell = clipToSite(cell, site, sites[j], j);
      if (cell.length === 0) break;
    }
    return cell;
  });
}

/** Area and centroid of a simple polygon of [x, y] points. */
export function areaCentroid(points) {
  let a = 0;
  let cx = 0;
  let cy = 0;
  for (let i = 0; i < points.length; i += 1) {
    const [x0, y0] = points[i];
    const [x1, y1] = points[(i + 1) % points.length];
    const f = x0 * y1 - x1 * y0;
    a += f;
    cx += (x0 + x1) * f;
    cy += (y0 + y1) * f;
  }
  if (Math.abs(a) < 1e-9) {
    const n = points.length || 1;
    return { area: 0, x: points.reduce((t, p) => t + p[0], 0) / n, y: points.reduce((t, p) => t + p[1], 0) / n };
  }
  return { area: Math.abs(a / 2), x: cx / (3 * a), y: cy / (3 * a) };
}

/** An SVG path `d` for closed polygons of [x, y] points. */
export function pathOf(polygons) {
  return polygons
    .filter((poly) => poly.length >= 3)
    .map((poly) => `M${poly.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join("L")}Z`)
    .join("");
}

function segmentDistance(p, a, b) {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const len2 = dx * dx + dy * dy;
  const t = len2 ? Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2)) : 0;
  return Math.hypot(p[0] - (a[0] + t * dx), p[1] - (a[1] + t * dy));
}

export function insidePolygon([x, y], poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i, i += 1) {
    const [xi, yi] = poly[i];
    const [xj, yj] = poly[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/**
 * A point inside `polys` for a label `width` units wide, as far as a grid search finds from the `avoid` points
 * (markers) and from the polygons' edges. Null when the polygons are empty.
 */
export function labelPoint(polys, avoid, width) {
  const pts = polys.flat();
  if (!pts.length) return null;
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const near = avoid.filter(([x, y]) => x > x0 - width && x < x1 + width && y > y0 - width && y < y1 + width);
  const steps = 24;
  let best = null;
  let bestScore = -Infinity;
  for (let i = 0; i <= steps; i += 1) {
    for (let j = 0; j <= steps; j += 1) {
      const p = [x0 + ((x1 - x0) * i) / steps, y0 + ((y1 - y0) * j) / steps];
      if (!polys.some((poly) => insidePolygon(p, poly))) continue;
      // A label is wide and short: horizontal room counts less than vertical room near a marker.
      let score = Infinity;
      for (const [x, y] of near) score = Math.min(score, Math.hypot(Math.max(0, Math.abs(p[0] - x) - width / 2), (p[1] - y) * 2));
      for (const poly of polys)
        for (let k = 0; k < poly.length; k += 1) score = Math.min(score, 1.5 * segmentDistance(p, poly[k], poly[(k + 1) % poly.length]));
      if (score > bestScore) {
        bestScore = score;
        best = p;
      }
    }
  }
  return best;
}
