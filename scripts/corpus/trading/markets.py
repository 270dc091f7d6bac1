"""The markets (parsed from market_table.txt), their tenors and per-family vocabulary."""

from __future__ import annotations

from dataclasses import dataclass

from .phrases import phrases, records


@dataclass(frozen=True)
class Market:
    key: str
    code: str
    family: str
    name: str
    long: str
    region: str
    unit: str
    venue: str
    settle: str
    sources: tuple[str, ...]
    price: float
    lot: str
    tags: tuple[str, ...]


# key|code|family|name|long|region|unit|venue|settle|sources|price|lot|tags, wrapped onto
# indented continuation lines: a text table keeps 36 markets readable at 100 columns.
MARKET_TABLE = phrases("market_table.txt")

FAMILY_WORDS = {
    "gas": ("natural gas", "nat gas", "gas", "NG"),
    "basis": ("gas basis", "nat gas basis", "basis"),
    "lng": ("LNG", "liquefied natural gas"),
    "power": ("power", "electricity", "power"),
    "crude": ("crude", "crude oil", "oil"),
    "products": ("",),
    "carbon": ("carbon allowances", "emission allowances", "carbon"),
    "coal": ("coal", "thermal coal", "steam coal"),
}
DELTA_UNIT = {
    "gas": "MMBtu/day equivalents",
    "basis": "MMBtu/day",
    "lng": "TBtu",
    "power": "MW",
    "crude": "barrels",
    "products": "barrels",
    "carbon": "tonnes",
    "coal": "tonnes",
}
TENOR_SETS = {
    "gas_us": "BALMO DA MA PEN LD1 Q SEAS CAL OPT APO",
    "gas_eu": "WD DA WKND BALMO MA Q SEAS CAL OPT",
    "basis": "DA BALMO MA SEAS CAL",
    "power_us": "DA RT BALMO PK_MA OP_MA PK_Q PK_CAL OPT",
    "power_eu": "DA WKND WEEK MA Q CAL OPT",
    "crude": "M1 BALMO CMA Q CAL OPT",
    "products": "M1 CMA Q CRACK",
    "carbon": "SPOT DEC1 DEC2 DEC3 OPT",
    "coal": "MA Q CAL",
    "lng": "MA SEAS CARGO",
    "DEP": "MA Q CAL",
    "SE3": "MA Q CAL",
    "RGGI": "SPOT DEC1 DEC2 DEC3",
    "DUBAI": "BALMO CMA Q CAL",
}
# key|title phrase|risk bucket|tag|prose variants (;-separated)
TENOR_TABLE = phrases("tenor_table.txt")


MARKETS = {
    f[0]: Market(*f[:9], tuple(f[9].split(",")), float(f[10]), f[11], tuple(f[12].split(",")))
    for f in records(MARKET_TABLE)
}
TENORS = {f[0]: (f[1], f[2], f[3], f[4].split(";")) for f in records(TENOR_TABLE)}

# code|title|a|b|kind|markets needed beyond a and b
SPREAD_TABLE = phrases("spread_table.txt")
VOL_MARKETS = ("HH", "TTF", "NBP", "PJMW", "ERCN", "DEB", "NORD", "BRENT", "WTI", "EUA", "JKM")
CAPTURE = (
    ("SP15", "Solar"),
    ("ERCN", "Wind"),
    ("DEB", "Solar"),
    ("DEB", "Wind"),
    ("UKB", "Wind"),
    ("SE3", "Wind"),
    ("FRB", "Solar"),
)
HEAT = (
    ("PJMW", "HH"),
    ("ERCN", "HH"),
    ("ERCH", "HH"),
    ("SP15", "SOCAL"),
    ("NP15", "SOCAL"),
    ("MISOIN", "CHI"),
)

FAMILY_TAG = {
    "gas": "natural-gas",
    "basis": "natural-gas",
    "lng": "lng",
    "power": "power",
    "crude": "crude-oil",
    "products": "refined-products",
    "carbon": "emissions",
    "coal": "coal",
}
VOL_LEVEL = {
    "gas": (45, 70),
    "basis": (50, 80),
    "lng": (40, 60),
    "power": (35, 80),
    "crude": (25, 40),
    "products": (25, 40),
    "carbon": (35, 50),
    "coal": (30, 45),
}
