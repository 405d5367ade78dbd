"""Data quality per sensor: freshness, completeness, ingest latency and message counts over the last 24 hours."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from api.access import ReadAccessDep, city_filter
from api.deps import ConnDep
from api.pagination import encode_cursor
from api.params import PageDep
from api.routes.common import CityQuery, DistrictQuery
from api.schemas import COMMON_RESPONSES, Page, UtcDatetime
from livinglab.precision import round_field
from livinglab.quality import histogram_quantile

router = APIRouter(prefix="/v1/quality", tags=["data quality"], responses=COMMON_RESPONSES)


class SensorQualityPublic(BaseModel):
    """How well one sensor's data arrives."""

    sensor_id: str
    city: str
    district: str
    kind: str
    last_seen: UtcDatetime | None = Field(description="When the ingester last accepted a message from it.")
    completeness_24h: float | None = Field(
        description="Readings received / expected over the last 24 completed hours (from the processor's hourly "
        "completeness; a quantity is expected while the sensor reported it within a week); null when nothing was "
        "expected."
    )
    latency_p50_s: float | None = Field(description="Median of received_at - ts (from merged hourly histograms).")
    latency_p95_s: float | None = Field(description="95th percentile of received_at - ts.")
    accepted_24h: int = Field(description="Readings accepted in the last 24 hourly buckets (this one included).")
    rejected_24h: int = Field(description="Messages rejected.")
    duplicates_24h: int = Field(description="Readings received again with the same value.")
    late_24h: int = Field(description="Readings that arrived after their window was final.")
    ignored_members_24h: int = Field(
        default=0, description="LoRaWAN: codec output members that mapped to no quantity (battery and the like)."
    )
    fcnt_gaps_24h: int = Field(default=0, description="LoRaWAN: times the uplink frame counter skipped ahead.")
    frames_missed_24h: int = Field(
        default=0, description="LoRaWAN: uplinks that never arrived, by the frame counter's gaps."
    )
    payloads_dropped_24h: int = Field(
        default=0,
        description="Rejected messages stored without their payload because the sensor's quota of rejected payload "
        "bytes was used up (a device sending much that is refused).",
    )


class SensorQualityListPublic(Page[SensorQualityPublic]):
    """Per sensor, ordered by sensor_id."""


def _hour_floor(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


@router.get("/sensors", summary="Data quality per sensor")
async def list_sensor_quality(
    access: ReadAccessDep, conn: ConnDep, page: PageDep, city: CityQuery = None, district: DistrictQuery = None
) -> SensorQualityListPublic:
    """Per sensor: last seen, completeness over the last 24 completed hours (from `completeness_hourly`), ingest
    latency percentiles (merged from hourly latency histograms) and ingest counters of the last 24 hourly buckets.
    """
    now = datetime.now(UTC)
    this_hour = _hour_floor(now)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "WITH page AS ("
            " SELECT sensor_key, sensor_id, city, district, kind, interval_s FROM sensors"
            f" WHERE {city_filter('city')}"
            " AND (%(district)s::text IS NULL OR district = %(district)s)"
            " AND (%(after)s::text IS NULL OR sensor_id > %(after)s) ORDER BY sensor_id LIMIT %(limit)s)"
            " SELECT p.*, seen.last_seen, c.accepted, c.rejected, c.duplicates, c.late, c.ignored_members,"
            " c.fcnt_gaps, c.frames_missed, a.received, a.expected, dr.dropped"
            " FROM page p"
            " LEFT JOIN LATERAL (SELECT max(last_seen) AS last_seen FROM ingest_counters"
            "  WHERE sensor_key = p.sensor_key AND last_seen IS NOT NULL) seen ON true"
            " LEFT JOIN LATERAL (SELECT sum(accepted) AS accepted, sum(rejected) AS rejected,"
            "  sum(duplicates) AS duplicates, sum(late) AS late, sum(ignored_members) AS ignored_members,"
            "  sum(fcnt_gaps) AS fcnt_gaps, sum(frames_missed) AS frames_missed FROM ingest_counters"
            "  WHERE sensor_key = p.sensor_key AND hour >= %(since)s) c ON true"
            " LEFT JOIN LATERAL (SELECT sum(received) AS received, sum(expected) AS expected FROM completeness_hourly"
            "  WHERE sensor_key = p.sensor_key AND hour >= %(h0)s AND hour < %(h1)s) a ON true"
            " LEFT JOIN LATERAL (SELECT sum(messages) AS dropped FROM rejected_drops"
            "  WHERE sensor_key = p.sensor_key AND hour >= %(since)s) dr ON true"
            " ORDER BY p.sensor_id",
            {
                "cities": access.cities_param(city),
                "district": district,
                "after": page.after_text(),
                "limit": page.limit + 1,
                "since": this_hour - timedelta(hours=23),
                "h0": this_hour - timedelta(hours=24),
                "h1": this_hour,
            },
        )
        rows = await cur.fetchall()
    rows, more = rows[: page.limit], len(rows) > page.limit
    histograms: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    if rows:
        cur2 = await conn.execute(
            "SELECT sensor_key, bucket, sum(n)::bigint FROM ingest_latency"
            " WHERE sensor_key = ANY(%s) AND hour >= %s GROUP BY sensor_key, bucket",
            ([r["sensor_key"] for r in rows], this_hour - timedelta(hours=23)),
        )
        for key, bucket, n in await cur2.fetchall():
            histograms[key][0].append(bucket)
            histograms[key][1].append(n)
    items = []
    for r in rows:
        buckets, counts = histograms.get(r["sensor_key"], ([], []))
        expected = r["expected"] or 0.0
        completeness = min(1.0, float(r["received"]) / expected) if expected > 0 else None
        items.append(
            SensorQualityPublic(
                sensor_id=r["sensor_id"],
                city=r["city"],
                district=r["district"],
                kind=r["kind"],
                last_seen=r["last_seen"],
                completeness_24h=round_field("completeness", completeness),
                latency_p50_s=histogram_quantile(buckets, counts, 0.50),
                latency_p95_s=histogram_quantile(buckets, counts, 0.95),
                accepted_24h=int(r["accepted"] or 0),
                rejected_24h=int(r["rejected"] or 0),
                duplicates_24h=int(r["duplicates"] or 0),
                late_24h=int(r["late"] or 0),
                ignored_members_24h=int(r["ignored_members"] or 0),
                fcnt_gaps_24h=int(r["fcnt_gaps"] or 0),
                frames_missed_24h=int(r["frames_missed"] or 0),
                payloads_dropped_24h=int(r["dropped"] or 0),
            )
        )
    next_cursor = encode_cursor([items[-1].sensor_id]) if more else None
    return SensorQualityListPublic(items=items, next_cursor=next_cursor)
