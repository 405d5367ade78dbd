"""Alarms (CONTRACT.md section 5), shared by the API, the CLI and the evaluator that runs beside the processors.

- `rules`: the metrics, the rule model and its validation;
- `store`: rules in the database (checks against the registry, the YAML import);
- `episodes`: raise, acknowledge and clear alarm episodes, with history, `alarm` events and queued notifications;
- `outbox`: the notification outbox the deliverers drain;
- `evaluator`: evaluation driven by the change feed and the silence clock.
"""

from livinglab.alarms.episodes import alarm_object
from livinglab.alarms.outbox import enqueue_deliveries, enqueue_deliveries_async
from livinglab.alarms.rules import Metric, RuleBase, RuleError, RuleSpec, metric_names

__all__ = [
    "Metric",
    "RuleBase",
    "RuleError",
    "RuleSpec",
    "alarm_object",
    "enqueue_deliveries",
    "enqueue_deliveries_async",
    "metric_names",
]
