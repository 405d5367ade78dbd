// The alarms panel: open alarms of the chosen city, active first, then acknowledged, each by severity and newest
// first; acknowledging with a note where the key allows (scope `sensors:write`). Kept current from the `alarm`
// events of the stream; the map draws a ring around every sensor with an open alarm.

import { t } from "./i18n.js";
import { fill, h, num, time } from "./util.js";

export const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
const STATE_RANK = { active: 0, acknowledged: 1 };

/** Open alarms in the order the panel shows them. */
export function ordered(alarms) {
  return [...alarms.values()]
    .filter((a) => a.state !== "cleared")
    .sort(
      (a, b) =>
        STATE_RANK[a.state] - STATE_RANK[b.state] ||
        SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] ||
        b.raised_at.localeCompare(a.raised_at) ||
        b.alarm_id - a.alarm_id,
    );
}

/** sensor_id -> the most severe open alarm's severity. */
export function severityBySensor(alarms) {
  const worst = new Map();
  for (const alarm of alarms.values()) {
    if (alarm.state === "cleared") continue;
    const old = worst.get(alarm.sensor_id);
    if (!old || SEVERITY_RANK[alarm.severity] < SEVERITY_RANK[old]) worst.set(alarm.sensor_id, alarm.severity);
  }
  return worst;
}

/**
 * @param {HTMLElement} list
 * @param {{alarms: Map<number, object>, canAcknowledge: boolean, onAcknowledge: (id: number, note: string) => void,
 *          onSelect: (sensorId: string) => void, problem: string|null}} options
 */
export function renderAlarms(list, summary, { alarms, canAcknowledge, onAcknowledge, onSelect, problem }) {
  const open = ordered(alarms);
  const active = open.filter((a) => a.state === "active").length;
  summary.textContent = open.length ? t("alarmsSummary", { active, acknowledged: open.length - active }) : "";
  if (problem) summary.append(h("span", { class: "panel-error", role: "status" }, ` ${t(problem)}`));
  if (!open.length) {
    fill(list, h("li", { class: "empty" }, t("alarmsNone")));
    return;
  }
  fill(
    list,
    open.map((alarm) => {
      const facts = [
        h("span", { class: `severity ${alarm.severity}` }, t(`severity_${alarm.severity}`)),
        h("strong", {}, alarm.rule_name),
        h(
          "button",
          { type: "button", class: "link", onclick: () => onSelect(alarm.sensor_id) },
          `${alarm.sensor_id} — ${alarm.district}`,
        ),
        h("span", { class: "muted" }, `${t("alarmValue")} ${num(alarm.last_value, 2)} · ${t("alarmRaised")} ${time(alarm.raised_at)}`),
      ];
      let action = null;
      if (alarm.state === "acknowledged") {
        action = h("span", { class: "acknowledged" }, t("alarmAcknowledged"), alarm.note ? `: ${alarm.note}` : "");
      } else if (canAcknowledge) {
        const input = h("input", { type: "text", maxlength: 2000, placeholder: t("alarmNote"), "aria-label": t("alarmNote") });
        action = h(
          "form",
          {
            class: "ack-form",
            onsubmit: (event) => {
              event.preventDefault();
              onAcknowledge(alarm.alarm_id, input.value.trim());
            },
          },
          input,
          h("button", { type: "submit" }, t("alarmAcknowledge")),
        );
      }
      return h(
        "li",
        { class: `alarm ${alarm.severity} ${alarm.state}`, dataset: { alarmId: alarm.alarm_id, sensorId: alarm.sensor_id, state: alarm.state, severity: alarm.severity } },
        h("div", { class: "alarm-facts" }, ...facts),
        action,
      );
    }),
  );
}
