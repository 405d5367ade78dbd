// Labels in Indonesian (id) and English (en). ISPU category names stay Indonesian in both languages, as the
// regulation names them; English adds a gloss beside them.

export const LANGUAGES = ["id", "en"];

const LABELS = {
  id: {
    title: "Living Lab Kota — Panel Operator",
    subtitle: "Kualitas udara, lalu lintas dan kualitas data secara langsung",
    language: "Bahasa",
    apiKey: "Kunci API",
    save: "Simpan",
    clear: "Hapus",
    keyHelp:
      "Kunci disimpan di peramban ini saja (localStorage). Buat kunci dengan `livinglab keys create --scope read`, " +
      "atau jalankan `livinglab up --public-read` agar data bisa dibaca tanpa kunci.",
    keyNeeded: "Data memerlukan kunci API. Masukkan kunci baca, atau jalankan platform dengan `livinglab up --public-read`.",
    keyRejected: "Kunci API ditolak oleh server.",
    city: "Kota",
    map: "Peta sensor",
    mapLabel: "Peta stasiun udara dan penghitung lalu lintas per wilayah",
    outlinesDerived: "Batas wilayah diturunkan dari posisi sensor (sel Voronoi per wilayah).",
    outlinesGiven: "Batas wilayah dari berkas GeoJSON yang dikonfigurasi.",
    legendIspu: "ISPU",
    legendLos: "Tingkat pelayanan",
    noData: "Belum ada data",
    airQuality: "Kualitas udara (ISPU)",
    traffic: "Lalu lintas per ruas",
    serviceLevels: "Kepatuhan standar pelayanan per wilayah",
    dataQuality: "Kualitas data",
    timeSeries: "Grafik deret waktu",
    liveFeed: "Pembaruan langsung",
    feedEmpty: "Menunggu pembaruan…",
    station: "Stasiun",
    district: "Wilayah",
    ispu: "ISPU",
    category: "Kategori",
    criticalParameter: "Parameter kritis",
    windowEnd: "Akhir periode",
    hoursValid: "Jam valid",
    segment: "Ruas",
    road: "Jalan",
    flowVeh: "Arus (kend/jam)",
    flowPcu: "Arus (skr/jam)",
    capacity: "Kapasitas (skr/jam)",
    dj: "DJ",
    djLong: "Derajat kejenuhan",
    los: "LOS",
    losLong: "Tingkat pelayanan",
    losTarget: "Target",
    meetsTarget: "Memenuhi",
    speed: "Kecepatan (km/jam)",
    hour: "Jam",
    service: "Layanan",
    indicator: "Indikator",
    target: "Target",
    achieved: "Tercapai",
    compliant: "Memenuhi target",
    notCompliant: "Tidak memenuhi target",
    period: "Periode",
    last24h: "24 jam",
    last7d: "7 hari",
    sensor: "Sensor",
    quantity: "Besaran",
    status: "Status",
    lastSeen: "Terakhir terlihat",
    completeness24h: "Kelengkapan 24 jam",
    latency: "Latensi p50 / p95 (dtk)",
    accepted24h: "Diterima",
    rejected24h: "Ditolak",
    duplicates24h: "Duplikat",
    late24h: "Terlambat",
    payloadsDropped24h: "Muatan dibuang",
    payloadsDroppedHelp: "Pesan ditolak yang disimpan tanpa muatannya: kuota byte muatan ditolak sensor ini sudah habis",
    stale: "Tidak aktif",
    live: "Aktif",
    never: "belum pernah",
    staleSummary: "{stale} dari {total} sensor tidak aktif (tanpa data lebih dari {minutes} menit).",
    rejectionsByReason: "Pesan ditolak menurut alasan (24 jam)",
    noRejections: "Tidak ada pesan ditolak.",
    atLeast: "paling sedikit",
    latest: "Nilai terbaru (rata-rata 1 menit)",
    lorawan: "LoRaWAN",
    devEui: "DevEUI",
    fieldMap: "Peta kolom kodek",
    fieldMapNone: "nama besaran apa adanya",
    ignoredMember: "diabaikan",
    framesMissed24h: "Frame hilang (24 jam)",
    membersIgnored24h: "Anggota kodek diabaikan (24 jam)",
    mean: "Rata-rata",
    minMax: "Min–maks",
    chartEmpty: "Belum ada agregat untuk periode ini.",
    streamConnecting: "Menyambung…",
    streamOpen: "Langsung",
    streamReconnecting: "Menyambung ulang…",
    streamPolling: "Pembaruan berkala",
    streamAuth: "Perlu kunci API",
    updated: "Diperbarui",
    apiDocs: "Dokumentasi API",
    serviceAir: "Udara",
    serviceTraffic: "Lalu lintas",
    serviceData: "Data",
    feedAggregate: "{quantity} rata-rata {window}: {value}",
    feedIspu: "ISPU {ispu} ({category})",
    feedTraffic: "LOS {los}, DJ {dj}",
    feedAqi: "AQI {aqi}",
    alarms: "Alarm",
    alarm: "Alarm",
    alarmsNone: "Tidak ada alarm aktif.",
    alarmsSummary: "{active} aktif, {acknowledged} sudah ditanggapi",
    alarmValue: "Nilai",
    alarmRaised: "sejak",
    alarmNote: "Catatan (opsional)",
    alarmAcknowledge: "Tanggapi",
    alarmAcknowledged: "Ditanggapi",
    alarmCannotAcknowledge: "Kunci ini tidak boleh menanggapi alarm (perlu cakupan sensors:write).",
    alarmAcknowledgeFailed: "Alarm gagal ditanggapi; coba lagi.",
    severity_critical: "Kritis",
    severity_warning: "Peringatan",
    severity_info: "Info",
    feedAlarm_raised: "alarm {rule}: {value}",
    feedAlarm_acknowledged: "alarm {rule} ditanggapi",
    feedAlarm_cleared: "alarm {rule} selesai",
    error: "Gagal memuat",
  },
  en: {
    title: "City Living Lab — Operator Dashboard",
    subtitle: "Air quality, traffic and data quality, live",
    language: "Language",
    apiKey: "API key",
    save: "Save",
    clear: "Clear",
    keyHelp:
      "The key is kept in this browser only (localStorage). Create one with `livinglab keys create --scope read`, " +
      "or run `livinglab up --public-read` to open reads without a key.",
    keyNeeded: "The data needs an API key. Enter a read key, or run the platform with `livinglab up --public-read`.",
    keyRejected: "The server rejected the API key.",
    city: "City",
    map: "Sensor map",
    mapLabel: "Map of air stations and traffic counters by district",
    outlinesDerived: "District outlines derived from sensor positions (Voronoi cells per district).",
    outlinesGiven: "District outlines from the configured GeoJSON file.",
    legendIspu: "ISPU",
    legendLos: "Level of service",
    noData: "No data yet",
    airQuality: "Air quality (ISPU)",
    traffic: "Traffic per segment",
    serviceLevels: "Service-level compliance per district",
    dataQuality: "Data quality",
    timeSeries: "Time series",
    liveFeed: "Live updates",
    feedEmpty: "Waiting for updates…",
    station: "Station",
    district: "District",
    ispu: "ISPU",
    category: "Category",
    criticalParameter: "Critical parameter",
    windowEnd: "Window end",
    hoursValid: "Valid hours",
    segment: "Segment",
    road: "Road",
    flowVeh: "Flow (veh/h)",
    flowPcu: "Flow (PCU/h)",
    capacity: "Capacity (PCU/h)",
    dj: "DS",
    djLong: "Degree of saturation (DJ)",
    los: "LOS",
    losLong: "Level of service",
    losTarget: "Target",
    meetsTarget: "Meets",
    speed: "Speed (km/h)",
    hour: "Hour",
    service: "Service",
    indicator: "Indicator",
    target: "Target",
    achieved: "Achieved",
    compliant: "Meets target",
    notCompliant: "Misses target",
    period: "Period",
    last24h: "24 hours",
    last7d: "7 days",
    sensor: "Sensor",
    quantity: "Quantity",
    status: "Status",
    lastSeen: "Last seen",
    completeness24h: "Completeness 24 h",
    latency: "Latency p50 / p95 (s)",
    accepted24h: "Accepted",
    rejected24h: "Rejected",
    duplicates24h: "Duplicates",
    late24h: "Late",
    payloadsDropped24h: "Payloads dropped",
    payloadsDroppedHelp: "Rejected messages stored without their payload: this sensor's quota of rejected payload bytes was used up",
    stale: "Stale",
    live: "Live",
    never: "never",
    staleSummary: "{stale} of {total} sensors are stale (no data for more than {minutes} minutes).",
    rejectionsByReason: "Rejected messages by reason (24 h)",
    noRejections: "No rejected messages.",
    atLeast: "at least",
    latest: "Latest values (1-minute mean)",
    lorawan: "LoRaWAN",
    devEui: "DevEUI",
    fieldMap: "Codec field map",
    fieldMapNone: "quantity names as they are",
    ignoredMember: "ignored",
    framesMissed24h: "Frames missed (24 h)",
    membersIgnored24h: "Codec members ignored (24 h)",
    mean: "Mean",
    minMax: "Min–max",
    chartEmpty: "No aggregates for this period yet.",
    streamConnecting: "Connecting…",
    streamOpen: "Live",
    streamReconnecting: "Reconnecting…",
    streamPolling: "Polling",
    streamAuth: "API key needed",
    updated: "Updated",
    apiDocs: "API documentation",
    serviceAir: "Air",
    serviceTraffic: "Traffic",
    serviceData: "Data",
    feedAggregate: "{quantity} {window} mean: {value}",
    feedIspu: "ISPU {ispu} ({category})",
    feedTraffic: "LOS {los}, DS {dj}",
    feedAqi: "AQI {aqi}",
    alarms: "Alarms",
    alarm: "Alarm",
    alarmsNone: "No open alarms.",
    alarmsSummary: "{active} active, {acknowledged} acknowledged",
    alarmValue: "Value",
    alarmRaised: "since",
    alarmNote: "Note (optional)",
    alarmAcknowledge: "Acknowledge",
    alarmAcknowledged: "Acknowledged",
    alarmCannotAcknowledge: "This key may not acknowledge alarms (it needs scope sensors:write).",
    alarmAcknowledgeFailed: "The alarm could not be acknowledged; try again.",
    severity_critical: "Critical",
    severity_warning: "Warning",
    severity_info: "Info",
    feedAlarm_raised: "alarm {rule}: {value}",
    feedAlarm_acknowledged: "alarm {rule} acknowledged",
    feedAlarm_cleared: "alarm {rule} cleared",
    error: "Could not load",
  },
};

// English glosses of the Indonesian ISPU categories (the names themselves are never translated).
const ISPU_GLOSS = {
  Baik: "good",
  Sedang: "moderate",
  "Tidak Sehat": "unhealthy",
  "Sangat Tidak Sehat": "very unhealthy",
  Berbahaya: "hazardous",
};

const INDICATORS = {
  id: {
    ispu_at_most_100_share: "Porsi jam-stasiun dengan ISPU ≤ 100",
    los_target_met_share: "Porsi jam-sensor yang memenuhi LOS minimum",
    completeness: "Kelengkapan data (diterima / diharapkan)",
  },
  en: {
    ispu_at_most_100_share: "Share of station-hours with ISPU ≤ 100",
    los_target_met_share: "Share of sensor-hours meeting the minimum LOS",
    completeness: "Data completeness (received / expected)",
  },
};

const REASONS = {
  id: {
    retained_message: "pesan tersimpan (retained)",
    topic_invalid: "topik tidak valid",
    unknown_sensor: "sensor tidak terdaftar",
    kind_mismatch: "jenis tidak cocok",
    payload_too_large: "muatan terlalu besar",
    invalid_utf8: "UTF-8 tidak valid",
    non_finite_value: "nilai tidak hingga",
    invalid_json: "JSON tidak valid",
    duplicate_key: "kunci ganda",
    invalid_shape: "bentuk tidak valid",
    unknown_quantity: "besaran tidak dikenal",
    bad_unit: "satuan salah",
    out_of_range: "di luar rentang",
    timestamp_in_future: "waktu di masa depan",
    timestamp_too_old: "waktu terlalu lama",
    conflicting_duplicate: "duplikat bertentangan",
    undecoded_payload: "tanpa keluaran kodek",
    no_readings: "tanpa bacaan",
  },
  en: {
    retained_message: "retained message",
    topic_invalid: "invalid topic",
    unknown_sensor: "unknown sensor",
    kind_mismatch: "kind mismatch",
    payload_too_large: "payload too large",
    invalid_utf8: "invalid UTF-8",
    non_finite_value: "non-finite value",
    invalid_json: "invalid JSON",
    duplicate_key: "duplicate key",
    invalid_shape: "invalid shape",
    unknown_quantity: "unknown quantity",
    bad_unit: "bad unit",
    out_of_range: "out of range",
    timestamp_in_future: "timestamp in the future",
    timestamp_too_old: "timestamp too old",
    conflicting_duplicate: "conflicting duplicate",
    undecoded_payload: "no codec output",
    no_readings: "no readings",
  },
};

// Quantities of CONTRACT.md section 1, with their canonical units.
export const QUANTITIES = {
  air: ["pm25", "pm10", "no2", "so2", "o3", "co", "hc", "temp", "rh"],
  traffic: ["sm", "kr", "kb", "speed", "occupancy"],
};

const UNITS = {
  pm25: "µg/m³", pm10: "µg/m³", no2: "µg/m³", so2: "µg/m³", o3: "µg/m³", co: "µg/m³", hc: "µg/m³",
  temp: "°C", rh: "%", sm: "", kr: "", kb: "", speed: "km/h", occupancy: "%",
};

const QUANTITY_NAMES = {
  id: {
    pm25: "PM2.5", pm10: "PM10", no2: "NO₂", so2: "SO₂", o3: "O₃", co: "CO", hc: "HC",
    temp: "Suhu", rh: "Kelembapan", sm: "Sepeda motor (SM)", kr: "Kendaraan ringan (KR)",
    kb: "Kendaraan berat (KB)", speed: "Kecepatan", occupancy: "Okupansi",
  },
  en: {
    pm25: "PM2.5", pm10: "PM10", no2: "NO₂", so2: "SO₂", o3: "O₃", co: "CO", hc: "HC",
    temp: "Temperature", rh: "Humidity", sm: "Motorcycles (SM)", kr: "Light vehicles (KR)",
    kb: "Heavy vehicles (KB)", speed: "Speed", occupancy: "Occupancy",
  },
};

let current = "id";

export function setLanguage(lang) {
  current = LANGUAGES.includes(lang) ? lang : "id";
  return current;
}

export function language() {
  return current;
}

export function locale() {
  return current === "id" ? "id-ID" : "en-GB";
}

/** The label `key` in the current language, with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = LABELS[current][key] ?? LABELS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

export function ispuGloss(category) {
  return current === "en" ? ISPU_GLOSS[category] ?? "" : "";
}

export function indicatorName(code) {
  return INDICATORS[current][code] ?? code;
}

export function reasonName(code) {
  return REASONS[current][code] ?? code;
}

export function quantityName(code) {
  return QUANTITY_NAMES[current][code] ?? code;
}

export function unit(code) {
  return UNITS[code] ?? "";
}

/** Fill every element carrying `data-i18n` (text) or `data-i18n-aria` / `data-i18n-title` (attributes). */
export function applyLabels(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-aria]")) el.setAttribute("aria-label", t(el.dataset.i18nAria));
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.setAttribute("title", t(el.dataset.i18nTitle));
  document.documentElement.lang = current;
}
