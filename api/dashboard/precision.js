// The decimals each served figure carries: the tables of livinglab/precision.py (docs/metrics.md), which the API
// already rounds to. The dashboard shows a figure with at most those decimals, so it reads as the API serves it.
// tests/api/test_precision.py checks that these tables equal the Python ones.
import { locale } from "./i18n.js";

export const FIELD_DECIMALS = {"flow_veh_h": 0, "flow_pcu_h": 2, "capacity_pcu_h": 0, "degree_of_saturation": 2, "mean_speed_kmh": 2, "completeness": 3, "achieved": 4};
export const READING_DECIMALS = {"pm25": 1, "pm10": 1, "no2": 1, "so2": 1, "o3": 1, "co": 0, "hc": 1, "temp": 1, "rh": 1, "sm": 0, "kr": 0, "kb": 0, "speed": 1, "occupancy": 1};
export const STATISTICS = ["mean", "mean_24h", "p50", "p95"];

/** Decimal places of a served field (a statistic of readings: of its quantity); null when served as stored. */
export function decimalsOf(field, quantity) {
  if (STATISTICS.includes(field)) return quantity in READING_DECIMALS ? READING_DECIMALS[quantity] + 1 : null;
  return field in FIELD_DECIMALS ? FIELD_DECIMALS[field] : null;
}

/** A served figure as text, with at most its decimals (trailing zeros dropped). */
export function figure(field, value, quantity) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  const decimals = decimalsOf(field, quantity) ?? 3;
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: decimals }).format(value);
}
