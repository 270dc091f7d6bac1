"""The three tenants: who they are, what they trade, and the names in their documents."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tenant:
    id: str
    prefix: str
    firm: str
    city: str
    etrm: str
    committee: str
    ccy: str
    markets: tuple[str, ...]
    desks: dict[str, str]
    drop: float  # share of catalogue entries a tenant does not have: catalogues differ
    scen_variants: int
    bt_variants: int
    versions: int


TENANTS = (
    Tenant(
        "northwind-energy",
        "nw",
        "Northwind",
        "Houston",
        "Endur",
        "Northwind Risk Committee",
        "USD",
        (
            "HH",
            "WAHA",
            "SOCAL",
            "ALGQ",
            "TZ6",
            "CHI",
            "TTF",
            "JKM",
            "USGC",
            "PJMW",
            "ERCN",
            "ERCH",
            "SP15",
            "NP15",
            "MISOIN",
            "WTI",
            "BRENT",
            "ULSD",
            "RBOB",
            "CCA",
            "RGGI",
        ),
        {
            "gas": "US gas desk",
            "basis": "gas basis desk",
            "lng": "LNG origination team",
            "power": "power desk",
            "crude": "crude and products desk",
            "products": "crude and products desk",
            "carbon": "environmental products desk",
            "coal": "power desk",
        },
        0.05,
        5,
        5,
        2,
    ),
    Tenant(
        "helios-trading",
        "ht",
        "Helios",
        "Geneva",
        "Allegro",
        "Helios Risk Council",
        "EUR",
        (
            "TTF",
            "NBP",
            "THE",
            "JKM",
            "NWE",
            "HH",
            "DEB",
            "DEP",
            "FRB",
            "UKB",
            "NORD",
            "BRENT",
            "WTI",
            "DUBAI",
            "GASOIL",
            "EUA",
            "UKA",
            "API2",
            "NEWC",
        ),
        {
            "gas": "European gas desk",
            "basis": "European gas desk",
            "lng": "LNG portfolio desk",
            "power": "continental power desk",
            "crude": "global oil desk",
            "products": "global oil desk",
            "carbon": "carbon desk",
            "coal": "coal and freight desk",
        },
        0.06,
        5,
        4,
        2,
    ),
    Tenant(
        "boreal-commodities",
        "bc",
        "Boreal",
        "Oslo",
        "Brady",
        "Boreal management committee",
        "EUR",
        ("NORD", "SE3", "DEB", "TTF", "EUA", "BRENT", "API2"),
        {
            "gas": "cross-commodity book",
            "power": "Nordic power desk",
            "crude": "cross-commodity book",
            "carbon": "carbon desk",
            "coal": "cross-commodity book",
            "basis": "cross-commodity book",
            "lng": "cross-commodity book",
            "products": "cross-commodity book",
        },
        0.45,
        1,
        1,
        1,
    ),
)

DOC_PLACEHOLDERS = {
    "nw": {
        "ccps": "CME Clearing and ICE Clear US",
        "master": "ISDA and NAESB",
        "regs": "CFTC and FERC rules",
        "brokers": "ICAP, BGC, Amerex and Tradition",
    },
    "ht": {
        "ccps": "ICE Clear Europe and ECC",
        "master": "ISDA and EFET",
        "regs": "REMIT and MAR",
        "brokers": "Marex, TFS, ICAP and Tullett Prebon",
    },
    "bc": {
        "ccps": "Nasdaq Clearing and ECC",
        "master": "EFET",
        "regs": "REMIT and MAR",
        "brokers": "ICAP, Tradition and Marex",
    },
}
LIMIT_DESKS = {
    "nw": (
        "US gas desk",
        "power desk",
        "gas basis desk",
        "crude and products desk",
        "environmental products desk",
        "LNG origination team",
    ),
    "ht": (
        "European gas desk",
        "continental power desk",
        "global oil desk",
        "carbon desk",
        "coal and freight desk",
        "LNG portfolio desk",
    ),
    "bc": ("Nordic power desk",),
}
