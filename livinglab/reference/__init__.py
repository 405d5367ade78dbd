"""Regulation tables as data: the constants city metrics follow, each file naming its source.

The tables live next to this module as data files, so a deployment can correct a value the sources leave "to
verify" without touching code, and so the processors and the simulator's independent ground truth read the same
constants:

- `ispu_2020.csv`: ISPU breakpoints, categories and Indonesian colours (Permen LHK P.14/MENLHK/SETJEN/KUM.1/7/2020);
- `aqi_epa_2024.csv`: US EPA AQI breakpoints, 2024 PM2.5 revision (40 CFR 58 App. G; EPA-454/B-24-002);
- `indices.toml`: hourly-mean validity, the ISPU 24-hour rule, NowCast parameters, AQI averaging periods and colours
  (CONTRACT.md section 4; the EPA NowCast fact sheet; AirNow-Tech);
- `pkji_2023.toml`: C0, FCLJ/FCPA/FCUK, ekr by flow band, LOS bands by DJ, minimum LOS by road function (PKJI 2023,
  SE 21/SE/Db/2023; PM 96/2015; KM 14/2006).

Values marked "to verify" in the sources (C0, the correction factors, the numeric LOS bands) and the choices the
sources leave open (AQI averaging periods, band boundaries of FCUK, the O3 and SO2 high-range rules) are documented
in the data files themselves. Loaders are cached: each file is parsed once per process.
"""

from livinglab.reference._air import (
    AqiCategory,
    AqiPollutant,
    AqiTable,
    IndexRules,
    IspuCategory,
    IspuTable,
    NowcastParameters,
    aqi_table,
    index_rules,
    ispu_table,
    nowcast_parameters,
)
from livinglab.reference._traffic import Curve, EkrFactors, EkrRule, PkjiTables, pkji_tables

__all__ = [
    "AqiCategory",
    "AqiPollutant",
    "AqiTable",
    "Curve",
    "EkrFactors",
    "EkrRule",
    "IndexRules",
    "IspuCategory",
    "IspuTable",
    "NowcastParameters",
    "PkjiTables",
    "aqi_table",
    "index_rules",
    "ispu_table",
    "nowcast_parameters",
    "pkji_tables",
]
