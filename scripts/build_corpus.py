"""Build ml_assets/data/search_corpus.jsonl: a seeded energy & commodities trading catalogue."""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20250611
OUT = Path(__file__).resolve().parents[1] / "ml_assets" / "data" / "search_corpus.jsonl"
# Fixed epoch: the corpus must not depend on when it was built.
EPOCH = datetime(2025, 1, 6, 7, 0)
MIN_WORDS, MAX_WORDS = 40, 160


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
MARKET_TABLE = """
HH|NG_HH|gas|Henry Hub|Natural gas Henry Hub|the US Gulf Coast|USD/MMBtu|NYMEX
    physical delivery at Sabine Pipe Line's Henry Hub in Erath, Louisiana
    ICAP,BGC,Tullett Prebon,Amerex|3.4|10,000 MMBtu|henry-hub,us-gas
WAHA|NG_WAHA|basis|Waha|Natural gas Waha|the Permian Basin|USD/MMBtu|ICE
    cash settlement against the Platts Gas Daily Waha index|Amerex,BGC,OTC Global|1.2
    2,500 MMBtu/day|waha,permian,us-gas
SOCAL|NG_SOCAL|basis|SoCal Citygate|Natural gas SoCal Citygate|Southern California|USD/MMBtu|ICE
    cash settlement against the SoCal Citygate Gas Daily index|Amerex,BGC|4.1|2,500 MMBtu/day
    socal,west-gas,us-gas
ALGQ|NG_ALGQ|basis|Algonquin Citygates|Natural gas Algonquin Citygates|New England|USD/MMBtu|ICE
    cash settlement against the Algonquin Citygates Gas Daily index|Amerex,ICAP|5.2
    2,500 MMBtu/day|algonquin,new-england,us-gas
TZ6|NG_TZ6NY|basis|Transco Zone 6 NY|Natural gas Transco Zone 6 New York|New York City|USD/MMBtu
    ICE|cash settlement against the Transco Z6 NY Gas Daily index|BGC,ICAP|3.9|2,500 MMBtu/day
    transco-z6,northeast,us-gas
CHI|NG_CHI|basis|Chicago Citygate|Natural gas Chicago Citygate|the US Midwest|USD/MMBtu|ICE
    cash settlement against the Chicago Citygates Gas Daily index|Amerex,BGC|3.2|2,500 MMBtu/day
    chicago,midwest,us-gas
TTF|NG_TTF|gas|TTF|Natural gas Dutch TTF|the Netherlands|EUR/MWh|ICE Endex
    delivery at the TTF virtual trading point run by Gasunie Transport Services
    Marex,TFS,ICAP,Griffin|34.5|1 MW per hour|ttf,eu-gas
NBP|NG_NBP|gas|NBP|Natural gas UK NBP|Great Britain|GBp/therm|ICE Futures Europe
    delivery at the National Balancing Point via trade nominations to National Gas
    Marex,TFS,Tullett Prebon|88.0|1,000 therms/day|nbp,uk-gas
THE|NG_THE|gas|THE|Natural gas German THE|Germany|EUR/MWh|EEX
    delivery at the Trading Hub Europe virtual point|EEX,Marex,TFS|36.2|1 MW per hour
    the-hub,eu-gas,germany
JKM|LNG_JKM|lng|JKM|LNG Japan Korea Marker|Northeast Asia|USD/MMBtu|CME and ICE cleared swaps
    cash settlement against the Platts JKM assessment|Platts,ICAP,Tullett Prebon|12.1
    10,000 MMBtu|jkm,lng,asia
NWE|LNG_NWE|lng|LNG DES NWE|LNG delivered ex-ship Northwest Europe|Northwest Europe|USD/MMBtu
    ICE|cash settlement against the Platts NWE LNG DES assessment|Platts,Argus,ICAP|10.6
    10,000 MMBtu|lng,nwe
USGC|LNG_USGC|lng|US Gulf Coast LNG|LNG US Gulf Coast FOB|the US Gulf Coast|USD/MMBtu|CME
    cash settlement against the Platts Gulf Coast Marker FOB assessment|Platts,Argus|8.9
    10,000 MMBtu|lng,us-gulf
PJMW|PWR_PJMW|power|PJM West Hub|Power PJM West Hub|the PJM Mid-Atlantic region|USD/MWh
    ICE and Nodal Exchange|cash settlement against the PJM Western Hub day-ahead LMP
    ICAP,Tradition,Amerex|52.0|1 MW|pjm,us-power
ERCN|PWR_ERCN|power|ERCOT North Hub|Power ERCOT North Hub|North Texas|USD/MWh|ICE
    cash settlement against the ERCOT North Hub real-time settlement point price
    ICAP,Tradition,BGC|47.0|1 MW|ercot,texas,us-power
ERCH|PWR_ERCH|power|ERCOT Houston Hub|Power ERCOT Houston Hub|the Houston load zone|USD/MWh|ICE
    cash settlement against the ERCOT Houston Hub real-time settlement point price
    ICAP,Tradition|49.0|1 MW|ercot,houston,us-power
SP15|PWR_SP15|power|CAISO SP15|Power CAISO SP15|Southern California|USD/MWh|ICE
    cash settlement against the CAISO SP15 trading hub day-ahead price|ICAP,Tradition,Amerex
    51.0|1 MW|caiso,sp15,us-power
NP15|PWR_NP15|power|CAISO NP15|Power CAISO NP15|Northern California|USD/MWh|ICE
    cash settlement against the CAISO NP15 trading hub day-ahead price|ICAP,Tradition|54.0|1 MW
    caiso,np15,us-power
MISOIN|PWR_MISOIN|power|MISO Indiana Hub|Power MISO Indiana Hub|the MISO footprint|USD/MWh|ICE
    cash settlement against the MISO Indiana Hub day-ahead LMP|ICAP,Amerex|44.0|1 MW
    miso,indiana,us-power
NORD|PWR_NORD_SYS|power|Nordic system price|Power Nord Pool system price|the Nordic region
    EUR/MWh|Nasdaq Commodities Nordic futures
    cash settlement against the Nord Pool day-ahead system price|Nasdaq,ICAP,Tradition|38.0|1 MW
    nordic,nord-pool,eu-power
SE3|PWR_SE3_EPAD|power|Stockholm SE3 EPAD|Power Nordic EPAD Stockholm SE3|Sweden (SE3)|EUR/MWh
    Nasdaq Commodities Nordic futures
    cash settlement against the SE3 area price minus the system price|Nasdaq,ICAP|6.5|1 MW
    nordic,epad,sweden
DEB|PWR_DE_BASE|power|German baseload|Power EEX German baseload|Germany|EUR/MWh|EEX
    cash settlement against the EPEX SPOT day-ahead auction for the DE-LU zone
    EEX,Tullett Prebon,TFS,Marex|86.0|1 MW|germany,eex,eu-power
DEP|PWR_DE_PEAK|power|German peakload|Power EEX German peakload|Germany|EUR/MWh|EEX
    cash settlement against the EPEX SPOT day-ahead auction, hours 08:00-20:00 on weekdays
    EEX,Tullett Prebon,TFS|97.0|1 MW|germany,peakload,eu-power
FRB|PWR_FR_BASE|power|French baseload|Power EEX French baseload|France|EUR/MWh|EEX
    cash settlement against the EPEX SPOT French day-ahead auction|EEX,Tullett Prebon|72.0|1 MW
    france,eex,eu-power
UKB|PWR_UK_BASE|power|UK baseload|Power UK baseload|Great Britain|GBP/MWh
    ICE Futures Europe and broker OTC|cash settlement against the N2EX day-ahead auction
    Marex,TFS,ICAP|74.0|1 MW|uk-power,n2ex
BRENT|CRUDE_BRENT|crude|Brent|Crude ICE Brent|the North Sea|USD/bbl|ICE Futures Europe
    cash settlement against the ICE Brent Index, with EFP into physical|PVM,ICAP,Tullett Prebon
    74.0|1,000 bbl|brent,crude
WTI|CRUDE_WTI|crude|WTI Cushing|Crude WTI Cushing|Cushing, Oklahoma|USD/bbl|NYMEX
    physical delivery at Cushing, Oklahoma|PVM,BGC,Amerex|70.5|1,000 bbl|wti,crude,cushing
DUBAI|CRUDE_DUBAI|crude|Dubai|Crude Dubai (Platts)|the Middle East Gulf|USD/bbl
    ICE and CME cleared swaps|cash settlement against the Platts Dubai assessment
    Platts,PVM,ICAP|72.8|1,000 bbl|dubai,crude,middle-east
ULSD|PROD_ULSD_NYH|products|NY Harbor ULSD|Products ULSD NY Harbor|New York Harbor|USD/gal|NYMEX
    physical delivery in New York Harbor|PVM,BGC|2.38|42,000 gal|ulsd,diesel,products
RBOB|PROD_RBOB|products|RBOB gasoline|Products RBOB gasoline NY Harbor|New York Harbor|USD/gal
    NYMEX|physical delivery in New York Harbor|PVM,BGC|2.21|42,000 gal|rbob,gasoline,products
GASOIL|PROD_GASOIL|products|ICE gasoil|Products ICE low-sulphur gasoil|the ARA region|USD/t
    ICE Futures Europe|physical delivery ex-tank in Amsterdam-Rotterdam-Antwerp
    PVM,Tullett Prebon|705.0|100 t|gasoil,diesel,products
EUA|EM_EUA|carbon|EUA|Carbon EU Allowances (EUA)|the EU ETS|EUR/t|ICE Endex
    physical transfer of allowances in the Union Registry|Marex,Evolution Markets,TFS|71.0
    1,000 allowances|eua,eu-ets,carbon
UKA|EM_UKA|carbon|UKA|Carbon UK Allowances (UKA)|the UK ETS|GBP/t|ICE Futures Europe
    physical transfer in the UK ETS Registry|Marex,TFS|42.0|1,000 allowances|uka,uk-ets,carbon
CCA|EM_CCA|carbon|CCA|Carbon California Carbon Allowances (CCA)|California cap-and-trade|USD/t
    ICE Futures US|physical transfer through the CITSS tracking system
    Evolution Markets,Karbone,ICAP|31.0|1,000 allowances|cca,california,carbon
RGGI|EM_RGGI|carbon|RGGI|Carbon RGGI allowances|the RGGI states|USD/short ton|ICE Futures US
    physical transfer through the RGGI COATS registry|Evolution Markets,Karbone|21.0
    1,000 allowances|rggi,northeast,carbon
API2|COAL_API2|coal|API2|Coal API2 CIF ARA|Amsterdam-Rotterdam-Antwerp|USD/t
    ICE Rotterdam coal futures|cash settlement against the Argus/McCloskey API2 index
    GFI,Tullett Prebon,Marex|112.0|1,000 t|api2,coal,ara
NEWC|COAL_NEWC|coal|Newcastle|Coal Newcastle FOB (NEWC)|eastern Australia|USD/t
    ICE Futures Europe|cash settlement against the globalCOAL NEWC index|GFI,Tullett Prebon
    136.0|1,000 t|newcastle,coal,asia
"""


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
TENOR_TABLE = """
BALMO|balance-of-month|prompt|balmo
    the remaining days of the current month;the balance of the month;the rest of the prompt month
DA|day-ahead|spot|day-ahead|next-day delivery;the next delivery day (D+1);day-ahead flow
MA|month-ahead|M+1|month-ahead|the front month;the next calendar month (M+1);the prompt month
PEN|penultimate-day|M+1|penultimate|the front month, priced off the penultimate settlement
LD1|last-day|M+1|last-day|the front month, priced off the final settlement
Q|quarterly|quarters|quarterly|quarterly strips out to Q+6;three-month quarter blocks
SEAS|seasonal|seasons|seasonal
    summer (Apr-Sep) and winter (Oct-Mar) strips;whole gas seasons;the next two seasons
CAL|calendar-year|cal|cal-year|full calendar years;twelve-month Cal strips;Cal blocks out to Cal+4
OPT|monthly|M+1|options|monthly expiries on the front contracts;the monthly option strip
APO|monthly|M+1|options|the monthly average of daily settlements
WD|within-day|spot|within-day|the current gas day;the remaining hours of today's gas day
WKND|weekend|spot|weekend|Saturday and Sunday delivery;the coming weekend
WEEK|week-ahead|spot|week-ahead|the next delivery week;Monday-to-Sunday blocks for next week
RT|real-time|spot|real-time|real-time hourly delivery;each operating day in real time
PK_MA|on-peak month-ahead|M+1|on-peak|peak hours of the front month;front-month on-peak hours
OP_MA|off-peak month-ahead|M+1|off-peak|off-peak hours of the front month;the front-month off-peak
PK_Q|on-peak quarterly|quarters|on-peak|on-peak quarter strips;peak hours of the next quarters
PK_CAL|on-peak calendar-year|cal|on-peak|on-peak Cal strips;peak hours of the next calendar years
M1|front-month|M+1|front-month|the front-month contract;the nearby contract
CMA|calendar-month-average|M+1|cma|the average of a calendar month;one pricing month, averaged
CRACK|crack|M+1|crack-spread|the monthly product-versus-crude margin;crack spreads by month
SPOT|spot|spot|spot|prompt delivery (T+1);spot allowances
DEC1|front-December|dec|december|the front December contract;this year's December expiry
DEC2|second-December|dec|december|next year's December contract;the second December expiry
DEC3|third-December|dec|december|the December contract two years out;the third December expiry
CARGO|spot|spot|cargo|a single cargo;one spot cargo in the next delivery window
"""


def _records(table: str) -> list[list[str]]:
    """Split a pipe table into records; indented lines continue the previous record."""
    records: list[str] = []
    for line in table.strip("\n").splitlines():
        if line.startswith(" "):
            records[-1] += "|" + line.strip()
        else:
            records.append(line)
    return [r.split("|") for r in records]


MARKETS = {
    f[0]: Market(*f[:9], tuple(f[9].split(",")), float(f[10]), f[11], tuple(f[12].split(",")))
    for f in _records(MARKET_TABLE)
}
TENORS = {f[0]: (f[1], f[2], f[3], f[4].split(";")) for f in _records(TENOR_TABLE)}


def _blocks(text: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Parse the template DSL: '@ name | fields', '- '/'~ ' new slot, '| ' variant, indent wraps."""
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    head, slots = "", []
    for raw in text.strip("\n").splitlines():
        line = raw.rstrip()
        if line.startswith("@ "):
            head, slots = line[2:], []
        elif line.startswith("  ") and not slots:
            head += " " + line.strip()
        elif line.startswith(("- ", "~ ")):
            slots.append([line[2:]] if line[0] == "-" else [line])
        elif line.startswith("| "):
            slots[-1].append(line[2:])
        elif line.startswith("  "):
            slots[-1][-1] += " " + line.strip()
        elif line:
            raise ValueError(f"bad template line: {raw!r}")
        fields = [f.strip() for f in head.split("|")]
        out[fields[0]] = (fields[1:], slots)
    return out


INSTRUMENT_TEMPLATES = """
@ def
- {code} is the {tenor_title} {noun} on {name} {w}, covering {tenor}.
| {A_noun} giving exposure to {name} {w} over {tenor}.
| Covers {tenor} at {name}; booked as {a_noun} and priced in {unit}.
| {name} {w} for {tenor}, traded as {a_noun}.
| Standard {noun} referencing {name} for {tenor}.
| Use this code for exposure to {name} over {tenor} ({noun}).
| {firm} lists this {noun} for hedging and trading {name} {w} across {tenor}.
@ body
- Settlement: {settle}.
| Final settlement is {settle}.
| At expiry: {settle}.
- Quoted in {unit}; the reference market is {venue}.
| Prices are in {unit} and most liquidity sits on {venue}.
| Standard clip is {lot}, priced in {unit}.
| Minimum lot {lot}; OTC trades are given up for clearing on {venue} where possible.
- End-of-day marks come from {s1} and {s2} broker quotes, checked against {venue} settlements.
| Middle office marks it off the {name} forward curve, built from {s1} and {s2} screens.
| Independent price verification uses {s2} closing quotes; gaps over {ipv} {unit} get escalated.
| Valued mark-to-market on the official {name} curve snapped at {snap}.
- Risk maps it to the {bucket} bucket of the {name} curve for VaR and delta limits.
| Delta is reported in {delta_unit} against the {bucket} bucket of {name}.
| For VaR it sits in the {bucket} tenor bucket of the {name} curve.
- Liquidity is decent: bid-offer is usually around {bo} {unit}.
| Typical bid-offer of {bo} {unit} in normal markets, much wider in stressed sessions.
| Screen liquidity thins late in the session; brokers are the better source after {snap}.
| Liquidity is concentrated in the nearby tenors.
- Booked in {etrm} with trade template {code}.
| Captured in {etrm}; confirmations are matched against the broker recap the same day.
| {etrm} template {code}; back office checks the clearing statement every morning.
- On {firm}'s approved product list since {since}.
| Trading beyond the standard clip needs sign-off from the {committee}.
| Owned by the {desk} in {city}.
@ use:gas
- The {desk} uses it to hedge storage injections and withdrawals.
| Mostly traded by the {desk} against weather-driven demand swings.
| Typical use: locking in fuel cost for gas-fired generation.
| The {desk} rolls this exposure monthly to keep the retail load hedge on target.
@ use:basis
- The {desk} pairs it with Henry Hub futures to express location views in {region}.
| Used to hedge firm transport capacity into {region}.
| Lets the {desk} separate hub price risk from location risk in {region}.
@ use:power
- The {desk} uses it to hedge generation and retail load in {region}.
| Typical users: the {desk}, for spark spread positions against gas.
| Used to lock in revenue for wind and solar assets in {region}.
| Helps the {desk} manage shape risk from load-following supply contracts in {region}.
@ use:crude
- The {desk} uses it for outright and inter-grade spread positions.
| Used by the {desk} to hedge cargo pricing exposure.
| Refinery margin hedges and term supply contracts reference it.
@ use:products
- The {desk} hedges terminal inventory and rack sales with it.
| Used for crack spread trades against crude.
| Hedges distillate and gasoline supply contracts with wholesale customers.
@ use:carbon
- The {desk} buys it to cover the compliance obligation of the generation fleet.
| Used in fuel-switching trades against gas and coal.
| Compliance hedge: allowances are surrendered each year against verified emissions.
@ use:coal
- The {desk} hedges coal burn at the remaining coal units with it.
| Used in clean dark spread trades against power and carbon.
| Hedges seaborne cargo purchases for European utilities.
@ use:lng
- The {desk} uses it to hedge cargo sales and diversion optionality.
| Used to lock in netbacks between US Gulf supply and destination markets.
| Hedges the pricing of spot and mid-term LNG cargoes.
@ tenor:BALMO
- The BALMO price rolls daily as delivered days drop out of the strip.
| BALMO trades at a premium or discount to the prompt month depending on storage.
@ tenor:DA
- Day-ahead trades close before the nomination deadline on the prior day.
| Weekend and holiday days are often traded as one package on Friday.
@ tenor:MA
- Expiry follows the exchange calendar for the front month.
| Most open interest sits in this contract.
@ tenor:PEN
- Penultimate swaps price off the second-to-last settlement of the expiring futures contract.
@ tenor:LD1
- The last-day swap settles on the final settlement of the expiring futures contract.
@ tenor:Q
- Quarters cascade into their component months before delivery.
@ tenor:SEAS
- Seasons cascade into quarters and months as they approach delivery.
| Winter-summer spreads are the main seasonal trade.
@ tenor:CAL
- Cal contracts cascade into quarters, then months.
| Liquidity is fine out to Cal+3; beyond that only brokers show prices.
@ tenor:OPT
- European-style options on the month; exercise is into the underlying futures.
| Vols come from the {name} volatility surface; strikes are listed in {strike} {unit} steps.
@ tenor:APO
- Average price options settle on the arithmetic mean of daily settlements over the month.
@ tenor:WD
- Within-day gas trades continuously and is mainly used to balance the portfolio intraday.
@ tenor:WKND
- Weekend contracts cover Saturday and Sunday as a single product.
| Weekend products are traded mostly on Thursday and Friday.
@ tenor:WEEK
- Week-ahead contracts cover Monday to Sunday delivery.
@ tenor:RT
- The real-time index swap settles on the average real-time price of each delivery hour.
@ tenor:PK_MA
- {peak_def}
@ tenor:OP_MA
- Off-peak covers overnight hours on weekdays plus all weekend and holiday hours (2x16 and 7x8).
@ tenor:PK_Q
- {peak_def}
@ tenor:PK_CAL
- {peak_def}
@ tenor:M1
- The desk rolls positions {roll} business days before the front contract expires.
@ tenor:CMA
- Calendar-month-average swaps settle on the mean of front-month settlements over the month.
@ tenor:CRACK
- The crack settles on the product average minus the crude average, converted to USD/bbl.
@ tenor:SPOT
- Spot allowances settle through the registry one business day after trade.
@ tenor:DEC1
- December expiries carry most of the liquidity; compliance buying goes through them.
@ tenor:DEC2
- Mostly used to roll compliance hedges one year forward at the cost of carry.
@ tenor:DEC3
- Compliance buyers use it to hedge obligations two years ahead; liquidity is thinner than in
  the front December.
@ tenor:CARGO
- A standard cargo is roughly 3.4 TBtu; the price is fixed around the delivery window.
"""

PPA_TABLE = """
nw|PPA_ERCW_WIND_10Y|ERCN|wind|pay-as-produced|10|150|24.5|a West Texas wind farm
nw|PPA_SP15_SOLAR_15Y|SP15|solar|pay-as-produced|15|120|31.0|a Kern County solar plant
nw|PPA_PJMW_SOLAR_VPPA|PJMW|solar|virtual fixed-for-floating|12|90|46.0|an Ohio solar project
nw|PPA_MISO_WIND_BL|MISOIN|wind|baseload-shaped|10|200|38.0|an Iowa wind portfolio
nw|PPA_ERCH_HYBRID_12Y|ERCH|solar-plus-storage|peak-shaped|12|100|42.0|a Brazoria County project
ht|PPA_DE_SOLAR_PAP|DEB|solar|pay-as-produced|10|80|52.0|a Brandenburg solar park
ht|PPA_DE_WIND_BL|DEB|onshore wind|baseload-shaped|7|60|68.0|a Lower Saxony wind farm
ht|PPA_FR_SOLAR_PAP|FRB|solar|pay-as-produced|12|45|48.0|a solar plant in Occitanie
ht|PPA_UK_OFFWIND_15Y|UKB|offshore wind|pay-as-produced|15|100|61.0|a North Sea wind farm
ht|PPA_NO_HYDRO_BL|NORD|hydro|baseload|10|50|36.0|a Norwegian run-of-river portfolio
bc|PPA_SE3_WIND_PAP|SE3|onshore wind|pay-as-produced|10|70|33.0|a wind farm in central Sweden
bc|PPA_NO_HYDRO_BL|NORD|hydro|baseload|8|40|37.0|a Norwegian hydro cooperative
"""

PPA_TEMPLATES = """
@ def
- {code}: a {years}-year {structure} PPA for {mw} MW of {tech} from {site}, settled against {name}.
| {firm} buys the output of {site} ({mw} MW, {tech}) under a {structure} contract for {years} years.
| Long-dated {tech} offtake: {mw} MW, {structure}, {years} years, fixed at {price} {unit}.
@ body
- The strike is {price} {unit}, {index}.
| Fixed price {price} {unit}, {index}; settlement is monthly against the {name} price.
- Main risks are volume, capture price and basis between the plant node and {name}.
| Shape risk dominates: the {tech} profile captures only about {capture}% of the baseload price.
| Capture rates for {tech} keep falling as penetration grows; the model assumes {capture}% now.
- Hedged with {name} forward strips; residual profile risk stays with the origination book.
| The {desk} hedges expected volumes with Cal strips and leaves the shape open.
- Valued with the hourly shape curve and a P50 production profile; P90 sizes the limits.
| Valuation uses simulated hourly generation and the {name} hourly price forward curve.
- {certs}
"""

CURVE_TEMPLATES = """
@ fwd:def
- Daily end-of-day forward curve for {name} {w} in {unit}, monthly out to {horizon} years.
| The official {name} price curve used for marking, VaR and P&L.
| {name} forward curve: one point per delivery month from the prompt out to {horizon} years.
| Mark-to-market curve for all {name} positions, published after the {snap} snapshot.
@ fwd:body
- Liquid months come from {venue} settlements; balance-of-month, quarters and seasons from {s1}
  and {s2} mid quotes.
| Inputs: exchange settlements for the first {liquid} months, {s1} broker mids for strips, and {s2}
  as the fallback.
| Bootstrapped from {venue} settlement prices; broker strip quotes from {s1} and {s2} are split
  into months.
- Strips are split into months with a maximum-smoothness spline that keeps the seasonal shape and
  reprices every input quote.
| The seasonal shape inside quarters comes from the last {yrs} years of settlements, rescaled so
  every strip reprices.
| Monthly decomposition uses a constrained cubic spline, so strips and their months stay
  arbitrage-free.
- Beyond month {liquid} the curve holds the last liquid Cal flat in real terms plus {infl}%
  inflation.
| Past the liquid horizon it mean-reverts toward a long-run level of about {lr} {unit}.
| The illiquid tail after about {liqy} years comes from the fundamentals team's model.
- Quotes older than two sessions are flagged stale; day-on-day moves above {sig} sigma need
  sign-off.
| Checks: strip consistency, no calendar spread beyond storage cost, and a comparison with {s2}
  closing levels.
| Month-end independent price verification compares marks with {s2}; gaps over {ipvp}% go to the
  {committee}.
- Feeds VaR, P&L explain and the credit exposure engine.
| Consumed by {etrm} for mark-to-market and by the risk engine for delta and VaR.
| Used for every {name} instrument from day-ahead to Cal.
- At the last snapshot the front month was near {px} {unit} and Cal+1 near {px2} {unit}.
| Recent front-month level: about {px} {unit}.
@ vol:def
- Implied volatility surface for {name} options, by expiry and delta.
| {name} vol surface: ATM level and smile for monthly options out to {vhor} months.
| The option-pricing volatility surface for {name} {w}.
@ vol:body
- ATM vols come from {venue} option settlements; the smile uses {s1} quotes for 25-delta risk
  reversals and butterflies.
| Calibrated nightly with a SABR fit per expiry (beta fixed at {beta}) to settlements and broker
  quotes.
| Strikes are in delta (10, 25, 50, 75, 90); wings beyond 10-delta are extrapolated flat in vol.
- The term structure shows the usual Samuelson effect: front-month vol near {v1}% against about
  {v2}% for Cal+1.
| Winter expiries carry a premium of about {vprem} vol points over summer.
| Front-month ATM vol was about {v1}% at the last snapshot.
- Calendar and butterfly arbitrage checks run after each fit; a failure falls back to the previous
  day's surface.
| Vols are sticky-strike intraday and re-marked at the {snap} close.
- Used for Black-76 option valuation, vega limits and the vol component of VaR.
| Feeds option greeks, vega buckets and the option book's P&L explain.
@ shape:def
- Hourly shaping profile for {name}: factors that spread monthly forwards into individual hours.
| Hourly price forward curve (HPFC) shape for {name}.
| {name} intra-month shape: relative prices by hour, day type and month.
@ shape:body
- Factors come from {yrs} years of day-ahead prices grouped by month, day type and hour, then
  normalised so each month averages to the forward.
| A regression on hour, day type, holidays and renewable output gives the shape, rescaled to the
  monthly peak and off-peak forwards.
- Daylight-saving changes produce 23- and 25-hour days, handled explicitly.
| Negative-price hours from recent springs are kept rather than floored at zero.
| The midday solar dip has deepened every year since {y0}, so older years are down-weighted.
- Used to value shaped load contracts, PPAs and hourly positions.
| Feeds the PPA valuation model and hourly VaR for the retail load book.
@ capture:def
- {tech} capture-price profile for {name}: the ratio of generation-weighted to baseload price by
  month.
| Monthly {tech_l} capture factors for {name}, used to price profiled renewable output.
@ capture:body
- Built from metered {tech_l} output and day-ahead prices over the last {yrs} years.
| Capture ratios are fitted per month and trended for the installed capacity pipeline.
- The current ratio is about {cap}% in the weakest month and {cap2}% in the best one.
| Cannibalisation has pulled the spring ratio down to roughly {cap}%.
- Used with the hourly shape to price pay-as-produced PPAs.
| Reviewed quarterly with the origination team.
@ heat:def
- Implied market heat rate for {name}: the power forward divided by the {gas} gas forward, in
  MMBtu/MWh.
| Heat-rate curve for {name} against {gas} gas.
@ heat:body
- Derived month by month from the official power and gas curves, on-peak and off-peak separately.
| Computed from the two marked curves; no separate broker quotes are used.
- On-peak summer heat rates sit near {hr} MMBtu/MWh; shoulder months are lower.
| Current Cal+1 on-peak heat rate is around {hr}.
- Used by the {desk} to express spark-spread and tolling views.
| Feeds tolling valuations and generation hedge ratios.
- Heat-rate options and tolling agreements at {name} are priced off this curve with a separate
  heat-rate volatility.
| Shoulder-month heat rates are floored at the efficiency of the best combined-cycle units.
@ spread:body
- Where the spread trades directly, {s1} quotes are used; otherwise it is the difference of the
  two outright curves.
| Spread quotes from {s1} and {s2} take priority over differencing the outright curves.
- Marked daily at {snap}; month-end levels are independently checked against broker closing
  runs.
| Stale spread quotes older than three sessions are replaced by the outright difference.
- Consumed by VaR as its own risk factor so that basis risk is not lost in the outrights.
| Used for spread limits and the {desk}'s P&L explain.
@ spread:basis
- Location basis of {a} against {b} in {unit}, one point per month out to Cal+{cal}.
| {a} minus {b}: the market price of moving gas to {region}.
@ spread:spark
- {a} spark spread: power minus {hr} MMBtu/MWh times {b} gas, in USD/MWh.
| Gross margin of a CCGT at {a} burning {b} gas at a {hr} heat rate.
@ spread:clean-spark
- Clean spark spread at {a}: power minus gas at 49% efficiency minus 0.37 t/MWh of carbon.
| {a} clean spark: a 49%-efficient CCGT's margin after gas ({b}) and carbon costs.
@ spread:clean-dark
- Clean dark spread at {a}: power minus API2 coal at 38% efficiency minus 0.9 t/MWh of carbon.
| {a} clean dark: coal plant margin after API2 fuel and EUA costs.
@ spread:crack
- {a} crack against {b}: product price converted to USD/bbl minus crude.
| Refining margin curve for {a} over {b}, in USD/bbl.
@ spread:crack321
- 3-2-1 crack: two barrels of RBOB and one of ULSD against three barrels of WTI.
| Gulf and Harbor refining margin proxy: 2 RBOB plus 1 ULSD minus 3 WTI, per barrel.
@ spread:arb
- {a} minus {b}, converted to common units where needed, month by month.
| Inter-market spread curve between {a} and {b}.
@ spread:netback
- US Gulf LNG netback: TTF converted to USD/MMBtu, less shipping and regas, against 115% of Henry
  Hub plus a tolling fee.
| Netback curve comparing delivered European prices with the US Gulf FOB cost stack.
@ spread:power-basis
- {a} minus {b} in {unit}; driven by congestion and transfer capacity between the zones.
| Zonal power spread between {a} and {b}, month by month.
@ spread:basis-eu
- {a} minus {b} in EUR/MWh, with NBP converted at 34.12 therms/MWh and GBP/EUR forwards.
| Hub spread between {a} and {b}, reflecting interconnector and transport costs.
"""

# code|title|a|b|kind|markets needed beyond a and b
SPREAD_TABLE = """
SPR_WAHA_HH|Waha vs Henry Hub basis curve|WAHA|HH|basis|
SPR_SOCAL_HH|SoCal Citygate vs Henry Hub basis curve|SOCAL|HH|basis|
SPR_ALGQ_HH|Algonquin vs Henry Hub basis curve|ALGQ|HH|basis|
SPR_TZ6_HH|Transco Z6 NY vs Henry Hub basis curve|TZ6|HH|basis|
SPR_CHI_HH|Chicago Citygate vs Henry Hub basis curve|CHI|HH|basis|
SPR_ERCH_ERCN|ERCOT Houston vs North power spread curve|ERCH|ERCN|power-basis|
SPR_SP15_NP15|CAISO SP15 vs NP15 spread curve|SP15|NP15|power-basis|
SPR_PJMW_SPARK|PJM West spark spread curve|PJMW|HH|spark|
SPR_ERCN_SPARK|ERCOT North spark spread curve|ERCN|HH|spark|
SPR_BRENT_WTI|Brent vs WTI spread curve|BRENT|WTI|arb|
SPR_ULSD_CRACK|NY Harbor ULSD crack spread curve|ULSD|WTI|crack|
SPR_RBOB_CRACK|RBOB gasoline crack spread curve|RBOB|WTI|crack|
SPR_321_CRACK|3-2-1 crack spread curve|RBOB|WTI|crack321|ULSD
SPR_JKM_TTF|JKM vs TTF spread curve|JKM|TTF|arb|
SPR_USGC_NETBACK|US Gulf LNG netback curve|USGC|TTF|netback|HH
SPR_NBP_TTF|NBP vs TTF spread curve|NBP|TTF|basis-eu|
SPR_THE_TTF|THE vs TTF spread curve|THE|TTF|basis-eu|
SPR_DE_CSS|German clean spark spread curve|DEB|TTF|clean-spark|EUA
SPR_DE_CDS|German clean dark spread curve|DEB|API2|clean-dark|EUA
SPR_DE_FR|German vs French baseload spread curve|DEB|FRB|power-basis|
SPR_BRENT_DUBAI|Brent vs Dubai EFS curve|BRENT|DUBAI|arb|
SPR_GASOIL_CRACK|ICE gasoil crack spread curve|GASOIL|BRENT|crack|
SPR_API2_NEWC|API2 vs Newcastle coal spread curve|API2|NEWC|arb|
SPR_UKA_EUA|UKA vs EUA carbon spread curve|UKA|EUA|arb|
SPR_NORD_DE|Nordic system vs German baseload spread curve|NORD|DEB|power-basis|
SPR_TTF_HH|TTF vs Henry Hub transatlantic spread curve|TTF|HH|arb|
SPR_UK_CSS|UK clean spark spread curve|UKB|NBP|clean-spark|UKA
"""
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

# @ key | title | tenants | shocks (% at severity 1) | params name=base:slope | when | tags
SCENARIO_TEMPLATES = """
@ polar | US polar vortex cold snap | nw | HH:55 ALGQ:180 TZ6:140 CHI:60 PJMW:85 MISOIN:65 ERCN:45
  | hdd=8:14 draw=200:140 frz=4:10 days=6:6 | winter 2025-26;winter 2026-27 | weather,winter,us-gas
- An Arctic outbreak holds heating degree days {hdd}% above normal across the Midwest and
  Northeast for {days} days.
| Polar air parks over the eastern half of the US for {days} days, lifting heating demand {hdd}%
  above the seasonal norm.
- Record heating load drives a weekly storage withdrawal near {draw} Bcf while wellhead
  freeze-offs cut about {frz} Bcf/d of supply.
| Storage draws approach {draw} Bcf in the peak week and Appalachian and Permian freeze-offs take
  {frz} Bcf/d offline.
- Pipeline constraints into New England and New York push citygate gas far above Henry Hub, and
  PJM scarcity pricing follows.
~ Winter Storm Elliott (December 2022)
~ the January 2014 polar vortex
@ gulf | Gulf of Mexico hurricane | nw ht
  | RBOB:26 ULSD:17 WTI:6 BRENT:4 HH:-9 USGC:-18 TTF:9 JKM:7 NWE:8 GASOIL:8
  | crude=0.4:1.0 gas=0.5:1.4 ref=0.8:1.4 days=5:5 lng=3:4 | 2026 hurricane season
  | weather,hurricane,oil
- A major hurricane lands between Corpus Christi and Lake Charles, shutting in {crude} mb/d of
  offshore crude and {gas} Bcf/d of gas for about {days} days.
| A storm in the Gulf shuts in {crude} mb/d of offshore oil and {gas} Bcf/d of gas output for
  roughly {days} days.
- Refineries with {ref} mb/d of capacity shut ahead of landfall and LNG terminals stop loading,
  cutting feedgas demand by about {lng} Bcf/d.
| Gulf Coast refining ({ref} mb/d) goes offline and export terminals halt, removing about {lng}
  Bcf/d of feedgas demand.
- Product cracks widen while Henry Hub weakens on lost export demand.
~ Hurricane Ida (2021)
~ Hurricanes Laura and Delta (2020)
~ Hurricane Harvey (2017)
@ russia | Loss of remaining Russian gas to Europe | nw ht bc
  | TTF:110 NBP:85 THE:115 DEB:70 DEP:75 FRB:55 UKB:50 NORD:20 SE3:15 JKM:45 NWE:80 EUA:-12 HH:6
  | bcm=12:20 wk=3:5 | winter 2025-26;summer 2026 | geopolitics,supply,eu-gas
- What is left of Russian supply to Europe, TurkStream flows and Yamal LNG cargoes, stops,
  removing about {bcm} bcm/y.
| TurkStream deliveries and Russian LNG to the EU are halted, a loss of roughly {bcm} bcm a year.
- Europe competes with Asia for spot LNG, and the 90% storage target by November looks out of
  reach for {wk} weeks.
| Storage refill falls behind plan for about {wk} weeks as Europe outbids Asia for flexible LNG.
- Gas sets the marginal price in continental power, so German and French forwards follow TTF
  higher while EUAs fall on demand destruction.
~ the 2022 Nord Stream shutdown
~ the August 2022 TTF spike above 300 EUR/MWh
@ eua | EU carbon price spike | ht bc | EUA:75 UKA:30 DEB:20 DEP:17 FRB:9 API2:-8 TTF:5 NORD:7
  | add=6:14 | 2026 compliance year | carbon,policy,eu-ets
- A tighter Market Stability Reserve and speculative buying lift December EUAs to about
  {EUA_lvl} EUR/t.
| December EUAs trade up to roughly {EUA_lvl} EUR/t on MSR tightening and fund inflows.
- Coal-to-gas switching accelerates and German clean dark spreads turn deeply negative.
| Gas units move ahead of coal in the merit order as dark spreads collapse.
- Carbon pass-through adds about {add} EUR/MWh to German baseload at the marginal plant.
~ the February 2023 move above 100 EUR/t
~ the 2018 MSR reform rally
@ heat | Heat dome over Texas and the West | nw
  | ERCN:220 ERCH:240 SP15:150 NP15:120 PJMW:45 HH:15 MISOIN:40
  | anom=3:3 load=78:11 hours=3:6 | summer 2026;summer 2027 | weather,summer,us-power
- A persistent ridge keeps temperatures {anom} C above normal across Texas and California for two
  weeks.
| A stalled high-pressure dome brings heat {anom} C above normal to Texas and the desert West.
- ERCOT demand peaks near {load} GW and real-time prices sit at the offer cap for {hours} hours
  on the worst days.
| Texas load hits about {load} GW; scarcity adders keep real-time prices at the cap for {hours}
  hours.
- Evening net-peak scarcity in CAISO after the solar ramp-down pushes SP15 and NP15 on-peak higher.
~ the August 2023 Texas heat wave
~ the September 2022 California heat event
@ dunkel | Dunkelflaute in Germany | ht bc
  | DEB:75 DEP:140 FRB:40 UKB:35 NORD:25 SE3:30 TTF:12 THE:14 EUA:6 NBP:10
  | days=4:6 lf=14:-6 | winter 2025-26;winter 2026-27 | weather,renewables,eu-power
- A high-pressure block over Central Europe keeps wind load factors under {lf}% for {days} days,
  with almost no solar.
| Cold, still, overcast weather: German wind output stays under {lf}% of capacity for {days} days.
- Residual load reaches record levels; gas and coal units run flat out and imports max out.
| Residual demand in Germany hits records and every interconnector runs at full import.
- Evening peaks clear in the hundreds of EUR/MWh and balancing costs jump for wind-heavy books.
~ the November and December 2024 Dunkelflaute episodes
~ the January 2017 cold and calm spell
@ freeport | Freeport LNG outage | nw ht
  | HH:-9 USGC:-22 TTF:14 NBP:12 THE:13 JKM:16 NWE:15 WAHA:-6
  | bcf=2.1:0 months=1:3 cargoes=18:0 | 2026;2027 | lng,outage,us-gas
- Freeport LNG, about {bcf} Bcf/d of feedgas, goes offline for {months} months after a trip at
  its liquefaction trains.
| The Freeport export plant ({bcf} Bcf/d) is down for {months} months following an unplanned
  outage.
- Gas that would have been exported stays onshore, so storage builds faster and Henry Hub falls.
| US storage builds quicker and Henry Hub softens as export demand disappears.
- European and Asian buyers lose around {cargoes} cargoes a month and the transatlantic spread
  widens.
~ the June 2022 Freeport fire
~ the repeated Freeport trips of 2024
@ opec | OPEC+ production cut | nw ht bc | BRENT:16 WTI:15 DUBAI:18 ULSD:10 RBOB:9 GASOIL:11
  | cut=0.4:1.2 | H2 2026;2027 | oil,opec,geopolitics
- OPEC+ announces a surprise cut of {cut} mb/d on top of existing voluntary reductions.
| The producer group trims output targets by {cut} million barrels a day.
- Medium-sour grades tighten most, so Dubai outperforms Brent and the Brent-Dubai EFS narrows.
| Sour crude tightens first; the EFS compresses as Dubai rallies.
- Brent front-month moves to around {BRENT_lvl} USD/bbl and backwardation steepens over the first
  year.
~ the October 2022 cut of two million barrels a day
~ the April 2023 voluntary cuts
@ mild | Mild European winter | ht bc
  | TTF:-35 NBP:-32 THE:-34 DEB:-24 DEP:-22 FRB:-20 UKB:-22 EUA:-14 JKM:-20 NWE:-30 NORD:-18
  | hdd=5:15 stor=45:15 | winter 2025-26;winter 2026-27 | weather,winter,eu-gas
- Heating degree days come in {hdd}% below the ten-year average from November to March.
| A warm winter: heating demand runs {hdd}% under normal all season.
- EU storage ends the winter about {stor}% full, reducing the summer refill need.
| Stocks finish March near {stor}% full, so summer injection demand is modest.
- Gas and power sell off across the front seasons; carbon weakens on lower gas burn.
~ winter 2023-24
~ winter 2019-20
@ norway | Unplanned Norwegian gas outage | ht bc | NBP:40 TTF:28 THE:26 UKB:22 DEB:11 NORD:5
  | mcm=30:40 weeks=1:3 | summer 2026;winter 2026-27 | supply,outage,eu-gas
- An unplanned outage at Troll and the Kollsnes plant removes about {mcm} mcm/d of Norwegian
  exports for {weeks} weeks.
| Norwegian export flows drop by {mcm} mcm/d for {weeks} weeks after faults at Kollsnes and
  Nyhamna.
- Flows to the UK via Langeled and to the continent drop; NBP reacts more than TTF.
- The prompt and balance-of-month take most of the move while Cal+1 barely changes.
~ the 2023 Nyhamna and Kollsnes outages
@ frnuke | French nuclear availability shortfall | ht | FRB:90 DEB:35 UKB:20 TTF:10 EUA:4
  | gw=46:-8 | winter 2026-27 | nuclear,outage,eu-power
- Stress-corrosion checks and strikes cut EDF nuclear availability to about {gw} GW through the
  winter.
| Reactor inspections leave French nuclear output near {gw} GW for the winter months.
- France becomes a net importer; German and UK power follow French baseload higher.
~ winter 2022-23
@ drought | Nordic dry year | ht bc | NORD:120 SE3:90 DEB:10 FRB:4 | twh=6:12 res=8:12
  | 2026 hydrological year | hydro,weather,nordic
- A dry autumn and a weak snowpack leave the Nordic hydro balance {twh} TWh below normal.
| Precipitation and snow deficits put the hydro balance about {twh} TWh short.
- Reservoirs sit about {res} percentage points under the median, so producers price water at
  thermal replacement cost.
- Southern price areas decouple from the north as transmission constraints bind.
~ the 2018 dry summer
~ the 2022 hydro deficit
@ redsea | Red Sea shipping disruption | nw ht | JKM:18 NWE:10 BRENT:7 DUBAI:6 GASOIL:14 ULSD:8
  TTF:6 | days=8:4 freight=80:70 | 2026 | shipping,geopolitics,lng
- Attacks on merchant ships close the Bab el-Mandeb route; tankers and LNG carriers divert around
  the Cape, adding {days} days per voyage.
| Vessels avoid Suez and the Red Sea; the Cape of Good Hope detour adds about {days} sailing days.
- Freight rates jump about {freight}% and European diesel cracks widen on delayed arrivals.
- Qatari cargoes to Europe take longer, supporting NWE and JKM.
~ the 2024 Houthi attacks
@ uri | Texas winter storm | nw | ERCN:400 ERCH:420 WAHA:300 HH:30 CHI:50 | shed=6:12 frz=6:10
  | winter 2025-26;winter 2026-27 | weather,winter,texas
- A long Arctic blast across Texas freezes wellheads and gathering lines, cutting {frz} Bcf/d of
  production.
| Freezing temperatures in Texas take about {frz} Bcf/d of gas output offline.
- Thermal units trip and ERCOT orders rotating outages of up to {shed} GW; real-time prices sit at
  the cap for days.
- Waha and Texas intrastate cash gas trade at multiples of Henry Hub.
~ Winter Storm Uri (February 2021)
@ solar | Spring solar glut and negative prices | nw ht | SP15:-28 NP15:-20 DEB:-14 DEP:-22 FRB:-10
  | hours=150:250 curt=1:2 | spring 2026;spring 2027 | renewables,solar,negative-prices
- Mild spring weather, strong sunshine and low demand push midday prices below zero most days.
- About {hours} negative-price hours are expected in the quarter, with {curt} TWh of renewables
  curtailed.
| Curtailment reaches roughly {curt} TWh and the quarter counts some {hours} negative hours.
- Solar capture rates fall; midday shapes hollow out while evening ramps steepen.
~ spring 2024 in California and Germany
@ asia | Asian demand surge | nw ht | JKM:30 NEWC:25 API2:10 BRENT:8 DUBAI:9 TTF:15 NWE:18 USGC:25
  | lng=10:15 | 2026;2027 | demand,asia,lng
- A strong Chinese recovery and a hot North Asian summer lift LNG imports by about {lng} Mt year
  on year.
| Chinese and Korean buying adds roughly {lng} Mt to annual LNG demand.
- JKM bids flexible US cargoes away from Europe; Newcastle coal rallies as utilities restock.
~ the 2021 China power crunch
@ margin | Exchange margin and liquidity stress | nw ht bc | TTF:35 HH:20 DEB:25 EUA:-15 BRENT:10
  | im=60:90 cash=80:170 | any quarter | liquidity,margin,credit
- Clearing houses raise initial margin on gas and power futures by {im}% within a week after a
  volatility spike.
| Initial margins on energy futures go up {im}% in a few sessions.
- Variation margin calls need about {cash} million {ccy} of extra liquidity, testing credit lines.
- Bid-offer spreads widen and volume migrates to bilateral OTC trades.
~ the August 2022 margin crunch
@ cca | California cap-and-invest tightening | nw | CCA:35 RGGI:12 SP15:5 NP15:4 | cut=10:20
  | 2026;2027 | carbon,policy,california
- CARB removes about {cut} million allowances from future budgets as part of the program
  extension.
- CCA futures re-price toward the auction reserve tiers; carbon adders in SP15 and NP15 rise.
~ the 2025 cap-and-invest reauthorisation
@ coal | Seaborne coal supply disruption | ht bc | API2:45 NEWC:50 DEB:8 EUA:-5 | mt=5:8
  | 2026 | coal,supply,weather
- Floods in Queensland and New South Wales and a rail strike in Colombia remove about {mt} Mt of
  seaborne thermal coal.
- API2 and Newcastle rally; clean dark spreads compress and coal plants lose merit order.
~ the 2022 Australian floods
~ the 2011 Queensland floods
@ nyh | Northeast refinery and terminal outage | nw | ULSD:22 RBOB:15 WTI:-2 | kbd=100:200
  | winter 2025-26;2026 | refining,outage,products
- An unplanned outage at a large East Coast refinery plus terminal flooding takes about {kbd} kb/d
  offline.
- NY Harbor inventories draw hard; the heating oil premium over gasoline widens.
~ Hurricane Sandy (2012)
@ permian | Permian takeaway constraint | nw | WAHA:-90 HH:3 ERCN:-4 | days=10:20
  | spring 2026;autumn 2026 | pipeline,basis,permian
- Maintenance on the main Permian takeaway lines coincides with rising associated gas output.
- Waha cash trades below zero on about {days} days; producers flare or shut in while Henry Hub
  barely moves.
~ the spring 2024 negative Waha prices
@ recession | Global recession demand shock | nw ht bc
  | BRENT:-30 WTI:-32 DUBAI:-29 TTF:-25 HH:-15 EUA:-35 DEB:-22 API2:-20 NORD:-12 PJMW:-12 JKM:-25
  | gdp=1:1.5 | 2026-27 | macro,demand,cross-commodity
- World GDP contracts about {gdp}% over four quarters and industrial output falls in Europe and
  Asia.
- Oil demand drops, refinery runs fall, and industrial gas and power use weakens.
- Carbon sells off hardest as industrials sell surplus allowances for cash.
~ the 2008-09 financial crisis
~ the 2020 Covid demand collapse
@ nordlink | Nordic interconnector outage | ht bc | NORD:-15 SE3:-10 DEB:8 DEP:10
  | gw=1.4:0 weeks=2:4 | 2026 | transmission,outage,nordic
- A cable fault takes the {gw} GW NordLink link between Norway and Germany out for {weeks} weeks.
- The Nordic surplus is trapped; system and southern area prices fall while Germany loses flexible
  imports.
~ past NordLink and NorNed cable faults
@ datacentre | PJM data-centre load surge | nw | PJMW:35 MISOIN:10 HH:6 TZ6:8 | gw=4:8
  | summer 2026;2027 | demand,data-centres,pjm
- Data-centre connections in northern Virginia and Ohio come faster than planned, adding about
  {gw} GW of round-the-clock load to PJM.
| Hyperscale data-centre load in PJM grows {gw} GW above the planning forecast.
- Reserve margins shrink, capacity prices spike and West Hub on-peak forwards re-price higher.
- More gas burn lifts Henry Hub and Transco Z6 modestly.
~ the 2024 and 2025 PJM capacity auctions
@ wildfire | California wildfire and transmission outage | nw | NP15:65 SP15:40 SOCAL:15
  | lines=2:3 days=3:7 | summer 2026;autumn 2026 | weather,wildfire,caiso
- Wildfires force public-safety power shutoffs and take {lines} major transmission paths out of
  service for {days} days.
| Fire danger leads to de-energised lines: {lines} key paths are out for about {days} days.
- Northern California is cut off from imports, so NP15 separates sharply from SP15.
~ the 2020 and 2021 California fire seasons
@ hormuz | Strait of Hormuz disruption | nw ht
  | BRENT:35 DUBAI:40 WTI:30 JKM:45 NWE:35 TTF:40 GASOIL:30 ULSD:25 NBP:35
  | mbd=4:8 days=5:15 | 2026 | geopolitics,oil,lng
- Military escalation in the Gulf halts tanker traffic through the Strait of Hormuz for {days}
  days, disrupting about {mbd} mb/d of crude and products.
| Shipping through Hormuz stops for {days} days; around {mbd} mb/d of oil cannot leave the Gulf.
- Qatari LNG exports are blocked as well, so JKM and TTF jump together.
- Strategic reserve releases cap the move in Brent after the first weeks.
~ the 1980s tanker war
~ the 2019 tanker attacks in the Gulf of Oman
@ sabotage | North Sea and Baltic infrastructure sabotage | ht bc | NBP:35 TTF:30 THE:28 NORD:10
  DEB:15 | mcm=40:60 weeks=2:6 | 2026 | geopolitics,infrastructure,eu-gas
- Damage to a major Norwegian export pipeline cuts about {mcm} mcm/d of gas to Europe for {weeks}
  weeks.
| Subsea infrastructure is damaged; roughly {mcm} mcm/d of Norwegian gas is lost for {weeks}
  weeks.
- Security costs and insurance premia rise for all North Sea assets.
~ the 2022 Nord Stream explosions
~ the 2023 Balticconnector damage
@ body
- Applied shocks: {shocks}.
| Curve moves in the scenario: {shocks}.
| Key prompt moves: {shocks}.
- Shocks hit the front {front_txt} in full and fade linearly to zero by month {fade}.
| Prompt contracts take the full move; the back of the curve moves {decay}% as much.
- Implied vols are scaled by {volx}x and correlations come from the {window} window.
| Vol surfaces are bumped by a factor of {volx}; correlations use the {window} stress window.
- Estimated P&L on the current book: {pnl} million {ccy}.
| Impact on today's positions would be about {pnl} million {ccy}.
- Runs weekly in the stress report for the {committee}.
| Part of the monthly stress pack reviewed by the {committee}.
- Historical analogue: {analog}.
| Calibrated with reference to {analog}.
"""

# @ key | strategy label | legs (;-separated, + joins markets) | params | param label | Sharpe
#   | tags. Rule slots may use {a}, {b}, {c} (leg market names) and the params.
BACKTEST_TEMPLATES = """
@ calspread | winter-summer calendar spread mean reversion | HH;TTF;NBP;THE
  | lb=20,z=2.0;lb=60,z=1.5;lb=120,z=2.5 | {lb}-day z-score, entry at {z} | 0.7
  | mean-reversion,calendar-spread
- Goes long the next winter versus summer spread on {a} when its {lb}-day z-score drops below
  -{z}, short above +{z}, and exits at zero.
| Fades moves in the {a} winter/summer spread: entry at {z} standard deviations from the {lb}-day
  mean, exit on reversion.
- Position size is scaled by the inverse of realised spread volatility.
@ storage | rolling-intrinsic storage optimisation | HH;TTF;THE
  | cyc=4,cap=10;cyc=12,cap=5;cyc=20,cap=3 | {cyc} cycles a year | 0.9 | storage,optimisation
- Simulates a {cap} Bcf-equivalent facility with {cyc} cycles a year, re-optimising the intrinsic
  injection and withdrawal plan against the {a} curve every day.
| Rolls the intrinsic value of a storage contract on {a}: {cyc} turns a year, locking in spread
  gains each time the curve moves.
- Injection and withdrawal rates, fuel losses of 1% and ratchets are modelled.
@ spark | spark spread capture | PJMW+HH;ERCN+HH;MISOIN+CHI;SP15+SOCAL;DEB+TTF+EUA;UKB+NBP+UKA
  | hr=7.0;hr=7.5;hr=8.0 | heat rate {hr} | 0.8 | spark-spread,generation
- Dispatches a virtual CCGT at a heat rate of {hr} MMBtu/MWh: runs when {a} power clears above {b}
  gas cost, hedging the month ahead.
| Sells {a} forward and buys {b} gas whenever the month-ahead spark spread at a heat rate of {hr}
  exceeds the variable cost.
- Start costs and minimum run times are included.
@ cleandark | clean dark spread timing | DEB+API2+EUA | eff=36;eff=38;eff=40 | {eff}% efficiency
  | 0.4 | clean-dark,coal
- Trades the {a} clean dark spread for a {eff}%-efficient coal plant: long when the forward spread
  is above its marginal cost, flat otherwise.
- Carbon is bought alongside the coal leg at the plant's emission factor.
@ trend | time-series momentum | BRENT;WTI;HH;TTF;EUA;NEWC;NORD;API2;DEB
  | lb=20;lb=60;lb=120 | {lb}-day lookback | 0.6 | momentum,trend-following
- Goes long {a} when the {lb}-day return is positive and short when it is negative, trading the
  second contract to avoid expiry effects.
| A {lb}-day breakout system on continuous {a} futures, volatility-targeted to 10% a year.
- Signals are checked daily; positions are rolled five days before expiry.
@ crack | crack spread mean reversion | WTI+RBOB+ULSD;BRENT+GASOIL
  | lb=30;lb=90;lb=180 | {lb}-day window | 0.5 | crack-spread,refining
- Trades the {b} crack against {a} back toward its {lb}-day seasonal mean.
| Buys the {b} refining margin when it is cheap to its {lb}-day seasonal norm, sells when rich.
- Seasonal norms are computed by calendar month so summer gasoline strength is not faded.
@ basis | location basis carry | WAHA+HH;ALGQ+HH;SOCAL+HH;TZ6+HH;NBP+TTF;THE+TTF
  | lb=20;lb=60;lb=250 | {lb}-day signal | 0.5 | basis,location-spread
- Holds the {a} minus {b} basis when the forward basis is wide to realised cash over {lb} days.
| Compares forward {a}-{b} basis with {lb}-day realised cash basis and trades the gap.
- Pipeline maintenance calendars are used to switch the signal off around known outages.
@ weather | weather forecast revision signal | HH;DEB;NORD;TTF | lead=1;lead=5;lead=10
  | {lead}-day lead | 0.9 | weather,forecast
- Trades {a} on changes in the ensemble forecast ({lead}-day lead): demand upgrades go long,
  downgrades short.
| Uses GFS and ECMWF ensemble revisions at a {lead}-day horizon to position in {a} prompt
  contracts.
- Positions are closed at the next model run; the signal is strongest in winter.
@ lngarb | LNG destination arbitrage | JKM+TTF;JKM+NWE;USGC+TTF | thr=0.5;thr=1.0;thr=1.5
  | {thr} USD/MMBtu trigger | 0.7 | lng,arbitrage
- Buys {a} and sells {b} when the spread net of shipping exceeds {thr} USD/MMBtu, mimicking a
  cargo diversion.
| A paper cargo-diversion strategy: switches exposure between {a} and {b} once the freight-adjusted
  spread clears {thr} USD/MMBtu.
- Freight comes from spot charter rates with a 15-day voyage assumption.
@ hydro | hydro balance signal | NORD;SE3 | lb=4;lb=8;lb=12 | {lb}-week change | 0.8
  | hydro,fundamentals
- Goes long the {a} front quarter when the hydro balance deteriorates over {lb} weeks and short
  when it improves.
| Uses the weekly change in snow, soil water and reservoir deviation over {lb} weeks to trade {a}.
- Hydro balance data come from the weekly fundamentals feed.
@ switch | coal-to-gas switching | EUA+TTF+API2 | sw=10;sw=20;sw=30
  | {sw} EUR/t switching band | 0.5 | fuel-switching,carbon
- Buys EUAs when the switching price sits more than {sw} EUR/t above the market and sells below.
| Compares the EUA price with the coal-to-gas switching level from TTF and API2, trading a {sw}
  EUR/t band.
- The switching level assumes 50% CCGT and 38% coal efficiency.
@ shortvol | delta-hedged short straddle | HH;TTF;BRENT;WTI | dte=20;dte=40;dte=60
  | {dte} days to expiry | 0.6 | options,volatility
- Sells front-month {a} ATM straddles {dte} days before expiry and delta-hedges daily.
| Collects the variance premium in {a} options: short ATM straddle at {dte} days to expiry,
  hedged each evening.
- A stop closes the trade when losses exceed three times the premium collected.
@ virtuals | day-ahead vs real-time virtual bidding | PJMW;ERCN;MISOIN;SP15
  | hrs=4;hrs=8;hrs=16 | top {hrs} hours | 0.9 | virtual-bidding,dart
- Submits INC and DEC offers at {a} for the {hrs} hours with the largest forecast day-ahead versus
  real-time spread.
| Trades the DA-RT spread at {a} with virtual bids on the {hrs} strongest hours each day.
- Uplift charges and the RTO's virtual transaction fees are deducted.
@ arb | inter-grade crude arbitrage | BRENT+WTI;BRENT+DUBAI | lb=20;lb=60;lb=120
  | {lb}-day window | 0.4 | crude,arbitrage
- Trades the {a}-{b} spread against a freight-adjusted fair value, {lb}-day rolling.
| Fades deviations of the {a} versus {b} spread from its {lb}-day mean adjusted for freight.
- Quality differentials and freight are updated monthly.
@ carry | curve carry and roll yield | BRENT;WTI;GASOIL | m=2;m=6;m=12 | M{m} versus M1 | 0.5
  | carry,roll-yield
- Long {a} when the M1-M{m} spread is backwardated, short in contango, rolled monthly.
| Captures roll yield on {a}: position sign follows the slope between the first and the
  M{m} contract.
- The backtest uses exchange settlements only.
@ ppa | PPA hedge effectiveness | ERCN;SP15;DEB;SE3 | h=60;h=80;h=100 | {h}% hedge ratio
  | 0.3 | ppa,hedging
- Hedges a pay-as-produced wind or solar profile at {a} with baseload forwards, hedge ratio {h}%,
  and measures residual shape and volume P&L.
| Tests how well {h}% baseload Cal hedges cover a renewable PPA at {a}.
- Generation comes from metered history, so weather and curtailment effects are realistic.
@ auction | auction clearing-price reversion | CCA;RGGI;EUA | d=5;d=10;d=20 | {d}-day hold | 0.6
  | carbon,auction
- Buys {a} futures ahead of the quarterly auction when secondary prices trade below the expected
  clearing price and holds {d} days.
| Trades {a} around auction dates: positions open a week before and unwind {d} days after.
- Auction results and reserve prices come from the regulator's published notices.
@ epad | EPAD area spread hedge | SE3+NORD | lb=20;lb=60;lb=120 | {lb}-day window | 0.4
  | epad,nordic
- Trades the {a} contract against its {lb}-day mean when the area spread to the {b} breaks out.
- Transmission outage notices are used to filter signals.
@ body
- Backtest of {label} on {mkt}, {y0} to {y1} ({plabel}).
| {label_cap} tested on {mkt} over {y0}-{y1}, {plabel}.
| Historical simulation: {label} applied to {mkt} from {y0} through {y1}.
| {mkt}: {label} ({plabel}), simulated {y0}-{y1}.
- Sharpe {sharpe} with a maximum drawdown of {dd}% and a hit rate of {hit}%.
| Annualised return {ret}% on allocated capital, Sharpe {sharpe}, worst drawdown {dd}%.
| {trades} trades, {hit}% winners, Sharpe ratio {sharpe}, max drawdown {dd}%.
- Costs assume {tc} ticks per round trip plus exchange fees.
| Slippage of {tc} ticks per trade and broker commission are included.
- Most of the P&L came from the 2021-2022 energy crisis; excluding 2022 the Sharpe falls to
  {sharpe_ex}.
| Flat in the quiet years {f0}-{f1}; the edge shows up in volatile winters.
| Out-of-sample from {oos} the Sharpe was {sharpe_oos}, close to in-sample.
| Parameters were fixed on data up to {oos} and not re-tuned afterwards.
- Status: {status}.
| Verdict: {status}.
"""
BACKTEST_STATUS = (
    "approved for paper trading",
    "rejected, the edge disappears after costs",
    "promoted to production with a reduced risk allocation",
    "parked pending better data",
    "under review by quant research",
    "approved as a hedge overlay only",
)

# @ kind:key | title | tenants | tags. Slots keep their order; the first is always used.
DOC_TEMPLATES = """
@ method:var | VaR methodology | nw ht bc | var,risk-methodology
- Value-at-risk is full historical simulation over the last {var_days} business days, 99%
  one-tailed, one-day horizon.
| {firm} measures VaR by replaying {var_days} days of historical curve moves at 99% confidence over
  one day.
- Moves are applied as relative returns to each curve point; basis and spread curves are simulated
  as their own factors, not as differences.
| Each tenor bucket of each curve is a risk factor; spreads are simulated directly so basis risk is
  not lost.
- Options are fully revalued in every scenario with Black-76 and the shifted vol surface.
| Option books are repriced in full rather than with delta-gamma approximations.
- Backtesting counts exceptions over a rolling 250 days; more than {exc} exceptions puts the model
  in the amber zone.
- Stressed VaR uses the {window} window and is reported next to the regular figure.
- Figures go to the {committee} every morning by 09:00 {city} time.
@ method:stress | Stress testing framework | nw ht bc | stress-testing,scenarios
- The stress framework combines historical replays, hypothetical scenarios and reverse stress tests
  across all books.
| {firm} runs three families of stress: historical replays, forward-looking scenarios and reverse
  stress tests.
- Hypothetical scenarios are written by the desks and risk together and reviewed each quarter.
| Scenario narratives come from desk heads; risk translates them into curve and vol shocks.
- Shocks are applied to prompt tenors in full and decay along the curve; vols and correlations are
  stressed too.
- Results are compared with a stress loss limit of {stress_lim} million {ccy}; breaches go to the
  {committee}.
| Any scenario losing more than {stress_lim} million {ccy} triggers a review by the {committee}.
- Reverse stress tests search for the combination of moves that would exhaust {rev}% of capital.
@ method:fwd | Forward curve construction methodology | nw ht bc | curves,methodology
- Every traded market has one official forward curve built after the close from exchange
  settlements and broker quotes.
| Official curves are built once a day from settlements first, then broker mids, then model values.
- Quotes for strips (quarters, seasons, Cal) are split into months with a smoothing spline that
  preserves the seasonal pattern.
- The liquid horizon is set per market; past it curves are extended with a long-run fundamental
  view.
| Beyond the last liquid point the curve follows the fundamentals team's long-run price path.
- Stale or crossed quotes are removed by automated checks before the build.
- Curve owners in middle office sign off the build; overrides are logged with a reason.
@ method:vol | Volatility surface methodology | nw ht | volatility,options,methodology
- Volatility surfaces are built per market by expiry and delta from exchange option settlements and
  broker quotes.
- SABR is fitted per expiry with beta fixed; the fit is rejected if it creates calendar or
  butterfly arbitrage.
| Each expiry's smile is a SABR fit; arbitrage checks across strikes and expiries follow.
- Illiquid expiries borrow smile shape from the nearest liquid one, scaled by the Samuelson term
  structure.
- Vega limits are set per surface and per expiry bucket.
@ method:hpfc | Hourly price forward curve methodology | nw ht bc | shaping,power,methodology
- The hourly price forward curve combines the monthly power forwards with an hourly shape model.
| Hourly forward prices are the product of the monthly forward and a normalised hourly shape.
- Shapes are estimated on several years of day-ahead prices by month, day type and hour, with
  recent years weighted more.
- Solar and wind growth is handled by trending the midday and windy-hour factors.
| Renewable penetration is reflected by adjusting factors for expected solar and wind capacity.
- Normalisation guarantees that the hourly curve reprices every peak and off-peak forward exactly.
- DST changes, public holidays and bridge days are treated explicitly.
@ method:ppa | PPA valuation methodology | nw ht bc | ppa,valuation,renewables
- PPAs are valued as a strip of hourly swaps on the expected production profile, discounted at
  the risk-free rate plus a counterparty spread.
- Production uses a P50 profile; P90 and P10 bound the volume risk used for limits.
| Expected output is the P50 estimate from the asset's energy yield assessment.
- Capture-price risk comes from the hourly price forward curve; shape and volume risk are reported
  separately.
- Beyond the liquid horizon prices follow the long-term fundamental curve with an illiquidity
  reserve.
| Tenors past the liquid horizon carry a model reserve for illiquidity.
- Certificates (RECs, guarantees of origin) are valued separately.
@ method:options | Option pricing models | nw ht | options,models,methodology
- Vanilla options on futures are priced with Black-76 off the official vol surface.
- Average price options use a moment-matching approximation; spread options use Kirk's formula
  with a correlation surface.
| APOs are priced with Turnbull-Wakeman style moment matching; spread options with Kirk.
- Daily options on gas and power use a separate short-dated vol curve.
- Model limitations and reserves are reviewed annually with model validation.
@ method:storage | Gas storage valuation methodology | nw ht | storage,valuation,gas
- Storage is valued as intrinsic plus extrinsic value: the intrinsic part from the forward spread
  and the extrinsic part from Least-Squares Monte Carlo.
- Injection and withdrawal curves, ratchets and fuel are modelled per facility.
- Rolling intrinsic is used for the hedge; the extrinsic value carries a model reserve.
| Hedging follows the rolling-intrinsic policy and extrinsic value is reserved.
@ method:pfe | Counterparty credit exposure (PFE) methodology | nw ht | credit,pfe,methodology
- Potential future exposure is simulated per netting set with a multi-factor price model.
- The 95th percentile of exposure at each date gives the PFE profile; the peak is compared with
  the credit limit.
- Collateral agreements are modelled with thresholds, minimum transfer amounts and a margin period
  of risk of 10 days.
- Wrong-way risk is flagged for producers and utilities whose credit quality tracks prices.
@ method:pnl | P&L attribution methodology | nw ht bc | pnl-explain,methodology
- Daily P&L is explained by new trades, price moves (delta, gamma), vol moves, time decay and
  residual.
| The P&L explain splits the day into new deals, curve moves, vol moves, theta and an unexplained
  remainder.
- The unexplained residual must stay below {resid}% of total P&L; larger residuals are investigated
  by product control.
- Explains are produced per book and per curve, and reviewed by desk heads before noon.
@ method:units | Units and conversion conventions | nw ht bc | units,conventions
- Gas: 1 MWh equals 3.412 MMBtu and 34.12 therms; NBP is quoted in pence per therm.
- Power volumes are in MWh per hour (MW); peak and off-peak definitions follow each exchange.
- Oil products convert at 42 gallons per barrel; gasoil at 7.45 barrels per tonne.
- FX conversions use the end-of-day forward curve for each delivery month.
@ method:weather | Weather data and degree-day conventions | nw ht | weather,data
- Heating and cooling degree days use a 65 F base in the US and 15.5 C in Europe.
| HDD and CDD are computed against 65 F (US) and 15.5 C (Europe) base temperatures.
- Forecasts come from GFS and ECMWF ensembles; the desk uses population-weighted aggregates.
- Normals are 10-year and 30-year averages; the desk trades against the 10-year normal.
@ method:carbon | Compliance carbon position methodology | nw ht bc | carbon,compliance
- The compliance position nets allowances held against verified and forecast emissions of the
  fleet.
- Forecast emissions use dispatch forecasts and plant emission factors updated monthly.
- The surrender deadline drives the hedge schedule; shortfalls are covered with December futures.
@ settle:noms-us | US gas nominations and scheduling | nw | gas,scheduling,operations
- Nominations follow the NAESB cycles: Timely at 1 pm Central the day before flow, then Evening,
  and intraday cycles ID1 to ID3.
| Gas schedulers submit Timely nominations by 1 pm CT and use Evening and ID1-ID3 to adjust.
- Confirmations with the pipelines are checked against the {etrm} schedule every cycle.
- Imbalances are cashed out monthly at the pipeline's index-based rates.
- Month-end actualisation compares scheduled and measured volumes before invoicing.
@ settle:noms-eu | European gas nominations at TTF, THE and NBP | ht bc | gas,scheduling,operations
- The gas day runs 06:00 to 06:00 CET at TTF and THE and 05:00 to 05:00 UK time at NBP.
- Trade nominations are sent to the TSO before the day-ahead deadline and re-nominated hourly as
  needed.
| Counterparty nominations are matched by the TSO; mismatches default to the lesser quantity.
- Balancing positions are settled at the TSO's marginal buy and sell prices.
@ settle:ercot | ERCOT QSE scheduling and settlement | nw | ercot,power,operations
- {firm} acts as its own Qualified Scheduling Entity and submits energy trades and self-schedules
  before the day-ahead market closes.
- Real-time settlement uses 15-minute settlement point prices; statements arrive on the initial,
  final and true-up timelines.
- Disputes must be filed within the ERCOT protocol deadlines.
- Credit exposure to ERCOT is recalculated daily and collateral posted as required.
@ settle:pjm | PJM scheduling and settlement | nw | pjm,power,operations
- Bilateral energy trades are reported through InSchedules; virtual bids go through the day-ahead
  market.
- Weekly billing statements are reconciled against {etrm} shadow settlements.
- FTR positions and capacity obligations are settled in the monthly bill.
@ settle:caiso | CAISO scheduling and settlement | nw | caiso,power,operations
- Inter-SC trades at SP15 and NP15 are submitted before the day-ahead market closes.
- Settlement statements are reviewed at T+3B and T+12B; disputes follow the CAISO tariff timeline.
- Convergence bids are used sparingly and settled at the difference of DA and RT prices.
@ settle:power-eu | European power nominations and clearing | ht bc | eu-power,operations
- Exchange trades on EEX clear through ECC; OTC forwards under EFET are nominated to the TSO
  schedule.
- Day-ahead auction positions on EPEX SPOT are settled daily through the clearing house.
- Cross-border capacity is booked through JAO for long-term rights.
@ settle:clearing | Exchange clearing and margin calls | nw ht bc | clearing,margin,operations
- Futures clear through {ccps}; variation margin is paid daily in cash and initial margin is
  recalculated every night.
- Treasury receives the margin call forecast by 08:00 {city} time and funds the clearing account
  the same morning.
| Margin calls are checked against the internal forecast and funded by 10:00 {city} time.
- Intraday calls during volatile sessions are escalated to the CFO and the {committee}.
- OTC trades are given up for clearing where the product is listed.
@ settle:efp | EFP and EFS processing | nw ht | efp,oil,operations
- Exchange-for-physical trades swap a futures position for a physical cargo at an agreed
  differential.
- Both sides register the EFP with the exchange on trade date; back office matches the futures
  legs.
- EFS trades swap futures for OTC swaps and follow the same registration process.
@ settle:lng | LNG cargo settlement and invoicing | nw ht | lng,operations
- Cargo invoices are based on the bill of lading quantity for FOB and the discharged quantity
  for DES.
- Pricing is usually the index average around the delivery window, as agreed in the confirmation.
- Boil-off, demurrage and laytime claims are settled in a separate invoice.
@ settle:registry | Emissions allowance transfers | nw ht bc | carbon,registry,operations
- Allowance transfers go through the relevant registry; two authorised representatives approve
  each transfer.
- Futures deliveries at expiry happen through the exchange's registry account.
- Annual surrender is tracked against the compliance calendar with a buffer of allowances.
@ settle:invoicing | Monthly OTC invoicing and netting | nw ht bc | invoicing,operations
- OTC physical and financial trades are invoiced monthly under {master} master agreements.
- Payables and receivables with the same counterparty are netted where the agreement allows.
- Payment is due on the 20th of the month after delivery unless the confirmation says otherwise.
@ settle:confirms | Trade confirmation and broker recap matching | nw ht bc
  | confirmations,operations
- Every OTC trade is confirmed within one business day; electronic matching is used where the
  counterparty supports it.
- Broker recaps are matched against {etrm} by the morning after trade date.
- Unmatched trades older than two days are escalated to the desk head.
@ settle:crude | Crude and products physical settlement | nw ht | oil,operations
- Physical cargoes are inspected by an independent surveyor for quantity and quality at loading.
- Pricing follows the bill of lading date window agreed in the contract.
- Letters of credit are required for new counterparties.
@ settle:coal | Coal cargo settlement | ht bc | coal,operations
- Coal cargoes are priced against API2 or NEWC monthly averages with quality adjustments for
  calorific value.
- Independent inspection at the load port determines weight and quality.
@ settle:nordic | Nordic power clearing and EPAD settlement | ht bc | nordic,operations
- Nordic futures and EPADs settle daily against the Nord Pool system and area prices through the
  clearing house.
- EPADs are cash-settled on the area price minus the system price for each delivery hour.
- Margin requirements are recalculated nightly.
@ proc:eod | End-of-day marking procedure | nw ht bc | marking,procedures
- Curves are snapped at {snap} after the main settlements; brokers' closing runs are captured
  automatically.
- Middle office runs the curve build, checks exceptions and publishes marks by 19:00.
| Marks are published after middle office resolves exceptions flagged by the curve checks.
- Trader overrides are allowed only with a written reason and product control approval.
@ proc:npa | New product approval | nw ht bc | new-product,governance
- Any new instrument, venue or structure needs a new product approval before the first trade.
- Risk, operations, legal, tax and IT sign off on booking, valuation and settlement.
- Approvals are granted by the {committee}; trial periods allow up to five trades.
@ proc:quotes | Broker quote capture | nw ht bc | brokers,market-data
- Broker quotes are captured from {brokers} feeds and stored with timestamps.
- Quotes feed the curve builds and the independent price verification process.
- Market data licences restrict redistribution; access is logged.
@ proc:recon | Position reconciliation | nw ht bc | reconciliation,operations
- Exchange positions are reconciled every morning against clearing statements.
- OTC positions are reconciled with counterparties monthly.
- Breaks larger than one lot are investigated the same day.
@ proc:surveillance | Trade surveillance and market abuse monitoring | nw ht bc | compliance
- Orders and trades are monitored for spoofing, wash trades and marking the close under {regs}.
- Alerts are reviewed by compliance daily; suspicious cases are reported to the regulator.
- Inside information about assets is disclosed through the required transparency platforms.
@ proc:mandate | Trading mandates and authorised traders | nw ht bc | mandates,governance
- Each trader has a mandate listing products, tenors and maximum clip sizes.
- Mandates are reviewed annually and after any breach.
- Trading outside a mandate is a limit breach and escalated to the {committee}.
@ note:ercot-summer | ERCOT summer reserve margin outlook | nw | ercot,outlook,research | power
- Peak demand forecasts for ERCOT keep rising with data centres and industrial load.
- Solar and batteries cover the afternoon peak, so scarcity risk has moved to the evening net
  peak.
- The desk prefers owning August on-peak heat rate over outright power.
@ note:hh-storage | Henry Hub storage and end-of-season outlook | nw | henry-hub,storage,research
  | gas
- US working gas storage is tracking near the five-year average.
- LNG feedgas growth from new Gulf Coast trains tightens the balance into the winter.
- Risks: a mild winter would leave end-March stocks well above average and pressure the curve.
@ note:lng-feedgas | US LNG feedgas and export outlook | nw ht | lng,research | lng
- New liquefaction capacity on the Gulf Coast lifts US feedgas demand materially over the next two
  years.
- Commissioning delays are the main downside risk to exports.
- Outages at large terminals such as Freeport move Henry Hub lower and TTF higher.
@ note:waha | Permian gas takeaway and Waha basis | nw | waha,permian,research | basis
- Associated gas growth keeps outrunning pipeline capacity out of the Permian until new lines are
  in service.
- Waha cash has traded negative during maintenance periods.
- The desk holds long Waha basis into the pipeline start-up dates.
@ note:pjm-capacity | PJM capacity and energy price outlook | nw | pjm,research | power
- High capacity auction prices signal a tighter PJM reserve margin as coal units retire.
- Data centre load growth in Virginia drives forward power higher at West Hub.
@ note:cca | California carbon market outlook | nw | cca,carbon,research | carbon
- Program extension and tighter caps support CCA prices over the next vintages.
- Auction settlement prices remain the key signal for the secondary market.
@ note:ttf-refill | TTF storage refill outlook | ht bc | ttf,storage,research | gas
- EU storage refill needs strong LNG imports through the summer.
- The summer-winter spread is too narrow to pay for injection at some sites.
- The desk expects TTF to trade at a premium to JKM only during refill stress.
@ note:eua-msr | EU carbon market and MSR outlook | ht bc | eua,carbon,research | carbon
- The Market Stability Reserve keeps absorbing surplus allowances, supporting EUA prices.
- Industrial demand is weak while power sector demand depends on gas-to-coal switching.
- ETS2 for buildings and transport is a long-term bullish factor.
@ note:de-solar | German solar growth and price shapes | ht | germany,solar,research | power
- German solar capacity keeps growing fast, so midday prices in spring and summer fall more often
  below zero.
- Battery storage growth should flatten the shape over time.
@ note:nordic-hydro | Nordic hydro balance outlook | ht bc | nordic,hydro,research | power
- The Nordic hydro balance is the main driver of system prices.
- Snowpack and reservoir data suggest a balance close to normal for the spring flood.
- Transmission constraints between north and south keep area spreads volatile.
@ note:opec | OPEC+ policy and oil balance outlook | nw ht | opec,oil,research | crude
- OPEC+ continues to manage supply with voluntary cuts and gradual unwinds.
- Non-OPEC supply growth from the Americas offsets part of the cuts.
- The desk sees Brent in a range with upside risk from Middle East supply shocks.
@ note:jkm-china | Asian LNG demand outlook | ht | jkm,lng,research | lng
- Chinese LNG demand responds strongly to price, with coal as the alternative fuel.
- JKM premiums over TTF attract flexible US cargoes to Asia.
@ note:french-nuke | French nuclear availability outlook | ht | france,nuclear,research | power
- EDF's availability has recovered since the corrosion problems of 2022.
- Low French prices make France a strong exporter to Germany and Italy.
@ note:se3 | Swedish price area spreads outlook | bc | sweden,epad,research | power
- SE3 often trades at a large premium to the system price when transmission from the north is
  constrained.
- EPADs are the main instrument to hedge the area price risk.
@ memo:hh-curve | Henry Hub forward curve model | nw | validation,curves,henry-hub
- Scope: the Henry Hub curve builder, including BALMO and strip decomposition.
- Replication of the curve from raw settlements and broker quotes matched within tolerance.
- Finding: extrapolation beyond Cal+5 is insensitive to new information.
| Finding: the smoothing weight was tuned on data before the 2022 volatility regime.
@ memo:ttf-curve | TTF forward curve model | ht bc | validation,curves,ttf
- Scope: the TTF curve builder and its decomposition of seasons and quarters.
- Independent rebuild from ICE Endex settlements and broker quotes matched within tolerance.
- Finding: weekend and bank holiday products are not reconciled with the day-ahead curve.
| Finding: broker quote staleness checks are too loose for illiquid back months.
@ memo:hpfc | Hourly price forward curve model | nw ht bc | validation,shaping,power
- Scope: the hourly shape model and normalisation to monthly forwards.
- Backtest of hourly shapes against realised prices showed a bias in midday hours.
| Out-of-sample tests showed the evening ramp underestimated in summer.
- Finding: solar growth is not fully reflected in the trend adjustment.
@ memo:var | VaR engine | nw ht bc | validation,var
- Scope: the historical simulation VaR engine and its data pipeline.
- Backtesting showed {exc_green} exceptions over 250 days, within the green zone.
| Backtesting showed {exc_amber} exceptions over 250 days, in the amber zone.
- Finding: proxy mappings for new products are not documented.
@ memo:pfe | PFE simulation model | nw ht | validation,credit,pfe
- Scope: the Monte Carlo exposure engine and collateral modelling.
- Finding: the mean-reversion speeds were calibrated on a short window.
- Benchmarking against a simpler add-on method gave consistent peak exposures.
@ memo:storage | Gas storage valuation model | nw ht | validation,storage
- Scope: the Least-Squares Monte Carlo storage model.
- Convergence tests with more paths and regressors were satisfactory.
- Finding: the extrinsic value is sensitive to the correlation between months.
@ memo:ppa | PPA valuation model | nw ht bc | validation,ppa
- Scope: the PPA valuation model with production and price simulations.
- Finding: the capture-price trend is too optimistic for solar.
| Finding: the volume-price correlation is not modelled.
@ memo:black76 | Black-76 option pricer | nw ht | validation,options
- Scope: the Black-76 pricer for options on futures and its greeks.
- Independent reimplementation matched prices to within 0.01%.
- Finding: early exercise features of American options on some contracts are ignored.
@ memo:sabr | SABR volatility calibration | nw ht | validation,volatility
- Scope: the SABR calibration for gas, power and oil surfaces.
- Finding: fits in the wings are unstable for illiquid expiries.
- The arbitrage checks work as designed.
@ memo:spread-option | Spread option model (Kirk) | nw ht | validation,options,spreads
- Scope: Kirk's approximation for spark and location spread options.
- Finding: accuracy drops for deep out-of-the-money strikes and high correlation.
@ memo:hydro | Nordic hydro fundamental model | ht bc | validation,nordic,hydro
- Scope: the hydro balance and system price model used for long-term Nordic curves.
- Finding: the reservoir model ignores recent changes in hydro plant capacity.
@ memo:load | Retail load forecast model | nw | validation,load,power
- Scope: the hourly load forecast used for retail hedging in ERCOT and PJM.
- Finding: the model underestimates peak load on extreme heat days.
@ method:basis | Basis and location spread methodology | nw ht | basis,spreads,methodology
- Location spreads are modelled as their own curves rather than as differences of outright
  curves.
| Every hub with its own price gets a basis curve against the benchmark hub.
- Prompt basis is anchored on daily index fixings ({vendor} and exchange indices); forward months
  use broker basis quotes.
- Seasonal patterns in basis, such as winter spikes at constrained citygates, are kept in the
  monthly shape.
| Winter premia at constrained delivery points are preserved when strips are split into months.
- Basis VaR uses historical basis moves, not implied ones from the outrights.
@ method:ipv | Independent price verification | nw ht bc | ipv,valuation,methodology
- Product control verifies trader marks against independent sources at every month end.
| Month-end IPV compares desk marks with broker closes, exchange settlements and consensus data.
- Tolerances are set per market and tenor; differences outside tolerance are adjusted in the books.
- Illiquid points without independent quotes get a valuation reserve instead of an adjustment.
- IPV results and reserves are presented to the {committee}.
@ method:reserves | Valuation reserves and close-out adjustments | nw ht | reserves,valuation
- Bid-offer reserves bring mid marks to the exit price for the net open position in each tenor
  bucket.
- Liquidity reserves apply when positions exceed typical daily volume for that product.
- Model reserves cover known limitations, such as extrapolated tails and illiquid vol surfaces.
| Model risk reserves are booked for uncertain model inputs and validation findings.
- Reserves are released only when the position is closed or the limitation resolved.
@ proc:bcp | Business continuity for trading and operations | nw ht bc | bcp,operations
- If the main office is unavailable, traders work from the backup site or home with full system
  access within two hours.
- Critical processes, margin funding, nominations and confirmations, have named backups.
| Margin funding, nominations and confirmations each have a named backup person.
- The plan is tested twice a year, including a full failover of {etrm}.
@ note:algonquin | New England winter gas basis outlook | nw | algonquin,basis,research | basis
- Pipeline capacity into New England is still tight on the coldest days.
- LNG imports into Everett and Canadian supply cap the worst spikes but not all of them.
- The desk keeps long January-February Algonquin basis as a cheap hedge for cold snaps.
@ note:brent-wti | Brent-WTI spread outlook | nw | brent,wti,research | crude
- US export capacity on the Gulf Coast anchors the Brent-WTI spread near the cost of shipping.
- Cushing stocks close to operational minimums make WTI spreads more volatile.
@ note:batteries | ERCOT battery build-out and price volatility | nw | ercot,storage,research
  | power
- Battery capacity in ERCOT has grown rapidly and now sets evening prices on many days.
- Ancillary service prices have fallen as batteries crowd into that market.
- Evening peak spikes are shorter, which lowers the value of peak options.
@ note:duck | CAISO duck curve and evening ramps | nw | caiso,solar,research | power
- Midday prices in CAISO fall further every spring as solar grows.
- The evening ramp after sunset is now the main driver of SP15 peak prices.
- Batteries flatten part of the ramp, but summer heat still creates scarcity.
@ note:nbp-winter | UK gas winter risk outlook | ht | nbp,uk-gas,research | gas
- The UK has little storage, so NBP depends on Norwegian flows and LNG in cold spells.
- The NBP-TTF spread widens in winter when interconnector flows to the continent reverse.
@ note:api2 | European coal outlook | ht | api2,coal,research | coal
- European coal demand keeps shrinking as plants close.
- API2 follows gas through the switching band and Newcastle through Asian demand.
@ note:de-cal | German power Cal+1 drivers | ht | germany,eex,research | power
- German Cal+1 baseload follows TTF and EUA through the gas plant cost at the margin.
- More solar lowers baseload but raises the peak-offpeak difference in winter.
- The desk prefers spread positions against France over outright German power.
@ memo:scarcity | ERCOT scarcity pricing model | nw | validation,ercot,scarcity
- Scope: the model of real-time price adders during scarcity in ERCOT.
- Finding: the reserve curve inputs are out of date after the latest protocol changes.
@ memo:netback | LNG netback model | nw ht | validation,lng
- Scope: the netback model that compares destination prices with US Gulf FOB costs.
- Finding: shipping costs use a single route and ignore canal restrictions.
@ memo:eua-forecast | EUA fundamental price model | ht bc | validation,eua,carbon
- Scope: the supply-demand model of the EU ETS used for long-dated EUA curves.
- Finding: the MSR intake rules are simplified and need updating for the latest reform.
@ memo:body
- Validation was performed by the independent model validation team in {city}.
| Independent validation by the model risk team, reporting to the CRO.
- Severity of findings: {sev}; remediation is due within {months} months.
- Outcome: {outcome}.
| Conclusion: {outcome}.
@ limits:body
- This policy sets the risk limits of the {desk} and replaces the previous edition.
| Limits for the {desk}, approved by the {committee}.
- VaR limit: {var_lim} million {ccy} (99%, one day); warning level at 80% utilisation.
| The desk's one-day 99% VaR must stay below {var_lim} million {ccy}.
- Stop-loss: a monthly loss of {stop} million {ccy} forces position reduction and review.
| Monthly drawdown trigger: {stop} million {ccy}.
- Tenor limit: no positions beyond {tenor_lim} years without committee approval.
- Net delta limits per commodity are set in {unit_lim}; concentration limits apply to single
  counterparties and venues.
- Breaches are reported within one hour to the head of risk and recorded in the breach log.
| Any breach is escalated to the head of risk within the hour and documented.
"""
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
DOC_TAILS = """
@ tail:method
- Owner: {owner}; the document is reviewed every year.
| Maintained by {owner} in {city}.
- Changes since the last edition: {change}.
- Related procedures sit in the {etrm} operations manual.
@ tail:settle
- Owner: {owner}; controls are tested quarterly by internal audit.
| Procedure owner: {owner}.
- Cut-off times are {city} local time unless stated otherwise.
- Exceptions are logged in {etrm} and reviewed weekly.
@ tail:note
- The view is the desk's own and does not change limits or mandates.
- Next update due in {next_month}.
| Sources: exchange settlements, broker runs and {vendor}.
- Written by the research analyst of the {desk} in {city}.
@ tail:memo
- Model owner: {owner}.
- Findings are tracked in the model inventory with due dates.
- Next periodic review in {next_year}.
"""

TPL = {
    **{f"inst:{k}": v for k, v in _blocks(INSTRUMENT_TEMPLATES).items()},
    **{f"ppa:{k}": v for k, v in _blocks(PPA_TEMPLATES).items()},
    **{f"curve:{k}": v for k, v in _blocks(CURVE_TEMPLATES).items()},
    **_blocks(DOC_TEMPLATES),
    **_blocks(DOC_TAILS),
}
SCENARIOS = _blocks(SCENARIO_TEMPLATES)
BACKTESTS = _blocks(BACKTEST_TEMPLATES)
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
SEVERITIES = (("moderate", 0.6, "1-in-5"), ("severe", 1.0, "1-in-20"), ("extreme", 1.5, "1-in-50"))
STRESS_WINDOWS = ("2021-2022 energy crisis", "2008-2009", "2020 Covid", "winter 2022-23")


def fmt(x: float) -> str:
    """Round a price-like number the way a desk would quote it."""
    a = abs(x)
    return (
        f"{x:.3f}" if a < 0.1 else f"{x:.2f}" if a < 10 else f"{x:.1f}" if a < 100 else f"{x:.0f}"
    )


def nwords(text: str) -> int:
    return len(text.split())


def pick(rng: random.Random, slot: Sequence[str], ctx: dict[str, object]) -> str:
    text = " ".join(rng.choice(slot).format_map(ctx).split())
    # An empty placeholder (products have no family word) must not leave "ULSD , covering",
    # and a placeholder ending like the next word must not read "spot spot contract".
    return re.sub(r"\b(\w+) \1\b", r"\1", re.sub(r" ([,.;:)])", r"\1", text))


def compose(
    rng: random.Random, lead: list[str], optional: list[str], shuffle: bool = True, skip: float = 0
) -> str:
    """Lead sentences, then optional ones up to a random target length, never over MAX_WORDS."""
    order = list(range(len(optional)))
    if shuffle:
        rng.shuffle(order)
    skipped = {i for i in order if skip and rng.random() < skip}
    target, n, used = rng.randint(55, 135), sum(nwords(s) for s in lead), []
    for i in order:
        if i not in skipped and n < target and n + nwords(optional[i]) <= MAX_WORDS:
            used.append(i)
            n += nwords(optional[i])
    # Skipped sentences only come back when the text would otherwise be too short.
    for i in order:
        if i in skipped and n < MIN_WORDS + 8 and n + nwords(optional[i]) <= MAX_WORDS:
            used.append(i)
            n += nwords(optional[i])
    if not shuffle:
        used.sort()
    return " ".join(lead + [optional[i] for i in used])


def stamp(rng: random.Random, year: int | None = None) -> str:
    """A fixed pseudo-random timestamp in 2025-04/2026 (or within the given year)."""
    lo, hi = {None: (0, 470), 2025: (0, 340), 2026: (365, 470)}[year]
    t = EPOCH + timedelta(days=rng.randint(lo, hi), minutes=rng.randint(0, 11 * 60))
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def tags_of(*groups: Sequence[str]) -> list[str]:
    seen = list(dict.fromkeys(t.lower() for g in groups for t in g))
    return seen[:6]


def snap_of(m: Market) -> str:
    if m.key in ("JKM", "DUBAI", "NEWC"):
        return "16:30 Singapore"
    if m.key in ("BRENT", "GASOIL") or m.unit.startswith(("GBP", "GBp")):
        return "16:30 London"
    return (
        "14:30 Central"
        if m.unit.startswith("USD") and m.key not in ("NWE", "API2")
        else ("17:30 CET")
    )


def base_ctx(t: Tenant) -> dict[str, object]:
    return {
        "firm": t.firm,
        "city": t.city,
        "etrm": t.etrm,
        "committee": t.committee,
        "ccy": t.ccy,
        **DOC_PLACEHOLDERS[t.prefix],
    }


def market_ctx(rng: random.Random, t: Tenant, m: Market) -> dict[str, object]:
    s1, s2 = rng.sample(m.sources, 2)
    return {
        **base_ctx(t),
        "name": m.name,
        "w": rng.choice(FAMILY_WORDS[m.family]),
        "unit": m.unit,
        "venue": m.venue,
        "settle": m.settle,
        "s1": s1,
        "s2": s2,
        "lot": m.lot,
        "region": m.region,
        "snap": snap_of(m),
        "desk": t.desks[m.family],
        "px": fmt(m.price * rng.uniform(0.92, 1.08)),
    }


def tenor_set(m: Market) -> list[str]:
    if m.key in TENOR_SETS:
        return TENOR_SETS[m.key].split()
    fam = m.family
    if fam in ("gas", "power"):
        fam += "_us" if m.unit.startswith("USD") else "_eu"
    return TENOR_SETS[fam].split()


def noun(m: Market, t: str) -> str:
    f, us = m.family, m.unit.startswith("USD")
    special = {"OPT": "option", "APO": "average price option"}
    if t in special:
        return special[t]
    if f == "gas":
        return (
            "financial swap"
            if t in ("PEN", "LD1")
            else "futures"
            if t in ("MA", "Q", "SEAS", "CAL")
            else "physical forward"
        )
    if f == "basis":
        return "index swap" if t == "DA" else "basis swap"
    if f == "power":
        return "index swap" if t in ("DA", "RT") else "financial forward" if us else "futures"
    if f in ("crude", "products"):
        return "futures" if t == "M1" else "swap"
    if f == "carbon":
        return "spot contract" if t == "SPOT" else "futures"
    if f == "lng" and t == "CARGO":
        return "FOB cargo" if m.key == "USGC" else "DES cargo"
    return "futures" if f == "coal" else "swap"


def nice_step(x: float) -> str:
    steps = (0.01, 0.05, 0.1, 0.5, 1, 5, 10)
    return fmt(min(steps, key=lambda s: abs(s - x)))


Doc = dict[str, object]


def build_instruments(rng: random.Random, t: Tenant) -> list[Doc]:
    docs: list[Doc] = []
    us_peak = (
        "On-peak means 5x16: hours ending 07:00 to 22:00, Monday to Friday, excluding NERC "
        "holidays."
    )
    for key in t.markets:
        m = MARKETS[key]
        tenors = tenor_set(m)
        keep = [x for x in tenors if rng.random() >= t.drop] or [tenors[0]]
        for tenor in keep:
            title_phrase, bucket, ttag, prose = TENORS[tenor]
            code = f"{m.code}_{tenor}"
            nn = noun(m, tenor).replace("futures", "futures contract")
            ctx = {
                **market_ctx(rng, t, m),
                "code": code,
                "noun": nn,
                "a_noun": ("an " if nn[0] in "aeiou" else "a ") + nn,
                "A_noun": ("An " if nn[0] in "aeiou" else "A ") + nn,
                "tenor_title": title_phrase,
                "tenor": rng.choice(prose),
                "bucket": bucket,
                "delta_unit": DELTA_UNIT[m.family],
                "bo": fmt(m.price * rng.uniform(0.002, 0.01)),
                "ipv": fmt(m.price * 0.01),
                "since": rng.randint(2014, 2024),
                "strike": nice_step(m.price * 0.015),
                "peak_def": us_peak,
                "roll": rng.choice((2, 3, 5)),
            }
            lead = [pick(rng, TPL["inst:def"][1][0], ctx)]
            body = [pick(rng, s, ctx) for s in TPL["inst:body"][1]]
            extra = [pick(rng, s, ctx) for s in TPL[f"inst:use:{m.family}"][1]]
            extra += [pick(rng, s, ctx) for s in TPL[f"inst:tenor:{tenor}"][1]]
            docs.append(
                {
                    "type": "instrument",
                    # Cargo and spot-allowance tenors would otherwise read "spot DES", "spot spot".
                    "title": re.sub(
                        r"( spot)+ (spot|DES|FOB)( FOB)?",
                        r" \2",
                        f"{code} — {m.long} {title_phrase} {noun(m, tenor)}",
                    ).replace("FOB FOB", "FOB"),
                    "text": compose(rng, lead, extra[:1] + body + extra[1:]),
                    "tags": tags_of([FAMILY_TAG[m.family]], m.tags, [ttag]),
                    "updated_at": stamp(rng),
                }
            )
    certs = {
        "USD": "Bundled RECs transfer to {firm} monthly.",
        "EUR": "Guarantees of origin are transferred with the energy each month.",
        "GBP": "REGOs are transferred with the power each month.",
    }
    for row in _records(PPA_TABLE):
        prefix, code, key, tech, structure, years, mw, price, site = row
        if prefix != t.prefix:
            continue
        m = MARKETS[key]
        ctx = {
            **market_ctx(rng, t, m),
            "code": code,
            "tech": tech,
            "structure": structure,
            "years": years,
            "mw": mw,
            "price": price,
            "site": site,
            "index": rng.choice(
                ("flat for the whole term", "escalating 2% a year", "indexed to CPI with a 3% cap")
            ),
            "capture": rng.randint(55, 78) if "solar" in tech else rng.randint(78, 92),
            "certs": certs[m.unit[:3]].format(firm=t.firm),
            "desk": t.desks["power"],
        }
        lead = [pick(rng, TPL["ppa:def"][1][0], ctx)]
        body = [pick(rng, s, ctx) for s in TPL["ppa:body"][1]]
        if tech == "hydro":
            # Capture-price cannibalisation is a wind and solar story; hydro risk is water.
            body[1] = "Main risk is hydrological: a dry year cuts output when prices are highest."
        docs.append(
            {
                "type": "instrument",
                "title": f"{code} — {m.name} {tech} PPA, {structure}, {years}-year",
                "text": compose(rng, lead, body),
                "tags": tags_of(["ppa", "power", tech.replace(" ", "-")], m.tags),
                "updated_at": stamp(rng),
            }
        )
    return docs


def curve_title(t: Tenant, code: str, desc: str) -> str:
    """Each tenant's catalogue names curves its own way."""
    return {"nw": f"{code} — {desc}", "ht": f"{desc} ({code})", "bc": desc}[t.prefix]


def build_curves(rng: random.Random, t: Tenant) -> list[Doc]:
    docs: list[Doc] = []

    def add(kind: str, code: str, desc: str, ctx: dict[str, object], tags: list[str]) -> None:
        if kind != "fwd" and rng.random() < t.drop:
            return
        lead = [pick(rng, TPL[f"curve:{kind}:def"][1][0], ctx)]
        body = [pick(rng, s, ctx) for s in TPL[f"curve:{kind}:body"][1]]
        docs.append(
            {
                "type": "curve",
                "title": curve_title(t, code, desc),
                "text": compose(rng, lead, body),
                "tags": tags_of(tags),
                "updated_at": stamp(rng),
            }
        )

    def ctx_for(m: Market) -> dict[str, object]:
        lo, hi = VOL_LEVEL[m.family]
        v1 = rng.randint(lo, hi)
        liquid = rng.choice((18, 24, 36, 48))
        return {
            **market_ctx(rng, t, m),
            "horizon": rng.choice((5, 8, 10, 15)),
            "liquid": liquid,
            "liqy": f"{liquid / 12:g}",
            "yrs": rng.randint(3, 6),
            "infl": rng.choice((2.0, 2.5)),
            "lr": fmt(m.price * rng.uniform(0.8, 1.0)),
            "sig": rng.randint(4, 6),
            "ipvp": rng.randint(1, 3),
            "px2": fmt(m.price * rng.uniform(0.85, 1.1)),
            "vhor": rng.choice((12, 24, 36)),
            "beta": rng.choice((0.5, 1.0)),
            "v1": v1,
            "v2": max(12, v1 - rng.randint(10, 25)),
            "vprem": rng.randint(3, 12),
            "y0": rng.randint(2019, 2021),
            "cal": rng.randint(3, 5),
            "hr": f"{rng.uniform(6.8, 8.6):.1f}",
        }

    for key in t.markets:
        m = MARKETS[key]
        label = {"carbon": "allowance", "basis": "gas index", "products": ""}.get(
            m.family, FAMILY_WORDS[m.family][0]
        )
        c = ctx_for(m)
        add(
            "fwd",
            f"CRV_{m.code}_FWD",
            # "US Gulf Coast LNG" + "LNG" must not read "LNG LNG".
            re.sub(r"\b(\w+) \1\b", r"\1", " ".join(f"{m.name} {label} forward curve".split())),
            c,
            ["forward-curve", FAMILY_TAG[m.family], *m.tags],
        )
        if key in VOL_MARKETS:
            add(
                "vol",
                f"CRV_{m.code}_VOL",
                f"{m.name} implied volatility surface",
                ctx_for(m),
                ["volatility", "options", *m.tags],
            )
        if m.family == "power" and key not in ("DEP", "SE3"):
            add(
                "shape",
                f"CRV_{m.code}_SHAPE",
                f"{m.name} hourly shaping profile",
                ctx_for(m),
                ["shaping", "hourly", *m.tags],
            )
    for key, tech in CAPTURE:
        if key in t.markets:
            m = MARKETS[key]
            c = {
                **ctx_for(m),
                "tech": tech,
                "tech_l": tech.lower(),
                "cap": rng.randint(45, 70) if tech == "Solar" else rng.randint(70, 85),
                "cap2": rng.randint(86, 99),
            }
            add(
                "capture",
                f"CRV_{m.code}_{tech.upper()}_CAPTURE",
                f"{m.name} {tech.lower()} capture-price profile",
                c,
                ["capture-price", tech.lower(), "renewables", *m.tags],
            )
    for pkey, gkey in HEAT:
        if pkey in t.markets and gkey in t.markets:
            m = MARKETS[pkey]
            c = {**ctx_for(m), "gas": MARKETS[gkey].name, "desk": t.desks["power"]}
            add(
                "heat",
                f"CRV_{m.code}_HR",
                f"{m.name} implied heat rate curve",
                c,
                ["heat-rate", "spark-spread", *m.tags],
            )
    for code, title, a, b, kind, needs in _records(SPREAD_TABLE):
        if not all(k in t.markets for k in (a, b, *filter(None, [needs]))):
            continue
        ma, mb = MARKETS[a], MARKETS[b]
        if rng.random() < t.drop:
            continue
        c = {**ctx_for(ma), "a": ma.name, "b": mb.name, "desk": t.desks[ma.family]}
        lead = [pick(rng, TPL[f"curve:spread:{kind}"][1][0], c)]
        body = [pick(rng, s, c) for s in TPL["curve:spread:body"][1]]
        docs.append(
            {
                "type": "curve",
                "title": curve_title(t, f"CRV_{code}", title),
                "text": compose(rng, lead, body),
                "tags": tags_of(["spread", kind], ma.tags[:2], mb.tags[:1]),
                "updated_at": stamp(rng),
            }
        )
    return docs


def _params(spec: str, f: float) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in spec.split():
        name, rule = item.split("=")
        base, slope = (float(x) for x in rule.split(":"))
        v = base + slope * f
        out[name] = int(round(v)) if abs(v) >= 10 or v == int(v) else round(v, 1)
    return out


def build_scenarios(rng: random.Random, t: Tenant) -> list[Doc]:
    docs: list[Doc] = []
    body = TPL_SCEN_BODY
    for key, (head, slots) in SCENARIOS.items():
        if key == "body" or t.prefix not in head[1].split():
            continue
        title, _, shock_spec, param_spec, whens, tags = head
        combos = [(s, w) for s in SEVERITIES for w in whens.split(";")]
        chosen = (
            [(SEVERITIES[1], whens.split(";")[0])]
            if t.scen_variants == 1
            else rng.sample(combos, min(t.scen_variants, len(combos)))
        )
        stories = [s for s in slots if not s[0].startswith("~ ")]
        analogs = [s[0][2:] for s in slots if s[0].startswith("~ ")]
        for (sev, f, rp), when in chosen:
            shocks = [
                (k, int(round(float(p) * f)))
                for k, p in (x.split(":") for x in shock_spec.split())
                if k in t.markets
            ]
            ctx = {
                **base_ctx(t),
                **_params(param_spec, f),
                "shocks": ", ".join(f"{MARKETS[k].name} {p:+d}%" for k, p in shocks[:6]),
                "decay": rng.choice((30, 40, 50, 60)),
                "front": rng.randint(1, 3),
                "fade": rng.choice((12, 18, 24)),
                "volx": rng.choice((1.2, 1.5, 1.8, 2.0)),
                "window": rng.choice(STRESS_WINDOWS),
                "analog": rng.choice(analogs),
                "pnl": f"{rng.uniform(-60, 25):.1f}",
                "committee": t.committee,
            }
            ctx.update({f"{k}_lvl": fmt(MARKETS[k].price * (1 + p / 100)) for k, p in shocks})
            ctx["front_txt"] = "month" if ctx["front"] == 1 else f"{ctx['front']} months"
            lead = [pick(rng, stories[0], ctx), pick(rng, body[0], ctx)]
            rest = [pick(rng, s, ctx) for s in stories[1:]] + [pick(rng, s, ctx) for s in body[1:]]
            suffix = f"{sev} ({rp})" + ("" if when == "any quarter" else f", {when}")
            docs.append(
                {
                    "type": "scenario",
                    "title": f"{title} — {suffix}"
                    if t.prefix != "ht"
                    else f"Stress: {title}, {suffix}",
                    "text": compose(rng, lead, rest, shuffle=False, skip=0.25),
                    "tags": tags_of(tags.split(","), ["stress-test"]),
                    "updated_at": stamp(rng),
                }
            )
    return docs


TPL_SCEN_BODY = SCENARIOS["body"][1]


def leg_names(keys: Sequence[str]) -> str:
    names = [MARKETS[k].name for k in keys]
    return (
        names[0]
        if len(names) == 1
        else " vs ".join(names[:2]) + (f" (with {names[2]})" if len(names) > 2 else "")
    )


def build_backtests(rng: random.Random, t: Tenant) -> list[Doc]:
    docs: list[Doc] = []
    body = BACKTESTS["body"][1]
    periods = ((2015, 2025), (2018, 2025), (2012, 2024), (2020, 2025))
    for key, (head, slots) in BACKTESTS.items():
        if key == "body":
            continue
        label, legs, params, plabel_t, sharpe0, tags = head
        for leg in legs.split(";"):
            keys = leg.split("+")
            if not all(k in t.markets for k in keys):
                continue
            combos = [(p, per) for p in params.split(";") for per in periods]
            for pspec, (y0, y1) in rng.sample(combos, t.bt_variants):
                if rng.random() < t.drop:
                    continue
                pv = dict(x.split("=") for x in pspec.split(","))
                sharpe = round(max(-0.4, rng.gauss(float(sharpe0), 0.35)), 2)
                ctx: dict[str, object] = {
                    **base_ctx(t),
                    **pv,
                    "label": label,
                    "label_cap": label[0].upper() + label[1:],
                    "mkt": leg_names(keys),
                    "a": MARKETS[keys[0]].name,
                    "b": MARKETS[keys[1]].name if len(keys) > 1 else "",
                    "y0": y0,
                    "y1": y1,
                    "sharpe": f"{sharpe:.2f}",
                    "dd": f"{max(3.0, rng.gauss(24 - 9 * sharpe, 4)):.1f}",
                    "hit": f"{50 + 4 * sharpe + rng.gauss(0, 2):.1f}",
                    "ret": f"{sharpe * rng.uniform(6, 12):.1f}",
                    "trades": rng.randint(40, 2400),
                    "tc": rng.choice((0.5, 1.5, 2)),
                    "sharpe_ex": f"{sharpe * rng.uniform(0.3, 0.8):.2f}",
                    "sharpe_oos": f"{sharpe * rng.uniform(0.7, 1.1):.2f}",
                    "oos": rng.randint(y0 + 2, y1 - 1),
                    "f0": max(y0, 2016) if y0 <= 2018 else 2023,
                    "f1": 2019 if y0 <= 2018 else 2024,
                    "status": rng.choice(
                        BACKTEST_STATUS[1:2] + BACKTEST_STATUS[3:5]
                        if sharpe < 0.35
                        else BACKTEST_STATUS
                    ),
                }
                ctx["plabel"] = plabel_t.format_map(ctx)
                lead = [pick(rng, body[0], ctx), pick(rng, slots[0], ctx), pick(rng, body[1], ctx)]
                rest = [pick(rng, s, ctx) for s in slots[1:] + body[2:]]
                mkt_tags = [tg for k in keys for tg in MARKETS[k].tags[:1]]
                title = (
                    f"Backtest: {ctx['mkt']} {label} ({ctx['plabel']}), {y0}-{y1}"
                    if t.prefix != "ht"
                    else f"{ctx['label_cap']} on {ctx['mkt']}: backtest {y0}-{y1}, {ctx['plabel']}"
                )
                docs.append(
                    {
                        "type": "backtest",
                        "title": title,
                        "text": compose(rng, lead, rest, shuffle=False, skip=0.2),
                        "tags": tags_of(["backtest"], tags.split(","), mkt_tags),
                        "updated_at": stamp(rng),
                    }
                )
    return docs


MEMO_OUTCOMES = {
    "low": ("approved", "approved with conditions"),
    "medium": ("approved with conditions", "approved for limited use pending remediation"),
    "high": (
        "approved for limited use pending remediation",
        "not approved, the model will be redeveloped",
    ),
}
KIND_TAG = {
    "method": "methodology",
    "settle": "settlement",
    "proc": "procedure",
    "note": "research-note",
    "memo": "validation-memo",
}


def doc_title(t: Tenant, kind: str, title: str, year: int, n: int) -> str:
    if kind == "note":
        return {
            "nw": f"Desk note: {title}",
            "ht": f"{title} (research note)",
            "bc": f"Note: {title}",
        }[t.prefix]
    if kind == "memo":
        return f"Model validation memo: {title} ({year})"
    return {
        "nw": f"{title} ({year} edition)",
        "ht": f"{title}, v{n + 2} {year}",
        "bc": f"{title} ({year})",
    }[t.prefix]


def effective(rng: random.Random, year: int, n: int) -> str:
    """The edition sentence: it keeps two editions of one document from sharing a text."""
    month = rng.choice(
        ("January", "February", "March", "April")
        if year == 2026
        else ("March", "May", "June", "September", "October")
    )
    tail = f", replacing the {year - 1} edition" if n or year == 2025 else ""
    return f"Effective from 1 {month} {year}{tail}."


def build_documents(rng: random.Random, t: Tenant) -> list[Doc]:
    docs: list[Doc] = []
    years = (2025, 2026)[-t.versions :]
    owners = {
        "method": ("market risk", "the quant team", "risk methodology"),
        "settle": ("operations", "back office", "middle office"),
        "proc": ("middle office", "compliance", "the COO office"),
        "note": ("the desk",),
        "memo": ("the desk quant team", "the risk analytics team"),
    }
    for name, (head, slots) in TPL.items():
        kind = name.split(":")[0]
        if kind not in owners or len(head) < 3 or t.prefix not in head[1].split():
            continue
        if rng.random() < t.drop:
            continue
        title, _, tags = head[:3]
        for n, year in enumerate(years if kind != "note" else years[-1:]):
            sev = rng.choice(("low", "medium", "high"))
            ctx = {
                **base_ctx(t),
                "owner": rng.choice(owners[kind]),
                "var_days": rng.choice((250, 500)),
                "exc": 4,
                "window": rng.choice(STRESS_WINDOWS),
                "stress_lim": rng.choice((25, 40, 60)),
                "rev": rng.choice((10, 20)),
                "resid": rng.choice((5, 10)),
                "snap": {"nw": "14:30 Central"}.get(t.prefix, "17:30 CET"),
                "desk": t.desks[head[3]] if len(head) > 3 else rng.choice(list(t.desks.values())),
                "change": rng.choice(
                    (
                        "updated the data window",
                        "added new products",
                        "clarified escalation steps",
                        f"aligned with the new {t.etrm} release",
                    )
                ),
                "next_month": rng.choice(("June", "September", "December")),
                "next_year": year + 1,
                "vendor": rng.choice(("Platts", "Argus", "Kpler")),
                "exc_green": rng.randint(1, 4),
                "exc_amber": rng.randint(5, 9),
                "sev": sev,
                "months": rng.choice((3, 6, 9)),
                "outcome": rng.choice(MEMO_OUTCOMES[sev]),
            }
            lead = [pick(rng, slots[0], ctx)]
            if kind in ("method", "settle", "proc"):
                lead.append(effective(rng, year, n))
            rest = [pick(rng, s, ctx) for s in slots[1:]]
            if kind == "memo":
                rest += [pick(rng, s, ctx) for s in TPL["memo:body"][1]]
            tail = TPL[f"tail:{'method' if kind == 'proc' else kind}"][1]
            rest += [pick(rng, s, ctx) for s in tail]
            docs.append(
                {
                    "type": "document",
                    "title": doc_title(t, kind, title, year, n),
                    "text": compose(rng, lead, rest, shuffle=False, skip=0.15),
                    "tags": tags_of(tags.split(","), [KIND_TAG[kind]]),
                    "updated_at": stamp(rng, year),
                }
            )
    unit_lim = {
        "gas": "MMBtu/day",
        "power": "MW",
        "oil": "barrels",
        "carbon": "tonnes",
        "coal": "tonnes",
        "lng": "TBtu",
        "basis": "MMBtu/day",
    }
    for desk in LIMIT_DESKS[t.prefix]:
        for n, year in enumerate(years):
            ulim = next((u for k, u in unit_lim.items() if k in desk.lower()), "MWh")
            ctx = {
                **base_ctx(t),
                "desk": desk,
                "var_lim": rng.choice((2, 3, 5, 8, 12)),
                "stop": rng.choice((4, 6, 10, 15)),
                "tenor_lim": rng.choice((3, 5, 10)),
                "unit_lim": ulim,
            }
            slots = TPL["limits:body"][1]
            docs.append(
                {
                    "type": "document",
                    "title": doc_title(t, "limits", f"Risk limits policy: {desk}", year, n),
                    "text": compose(
                        rng,
                        [pick(rng, slots[0], ctx), effective(rng, year, n)],
                        [pick(rng, s, ctx) for s in slots[1:]],
                        shuffle=False,
                    ),
                    "tags": tags_of(["risk-limits", "policy", "governance"]),
                    "updated_at": stamp(rng, year),
                }
            )
    return docs


BUILDERS: tuple[tuple[str, str, Callable[[random.Random, Tenant], list[Doc]]], ...] = (
    ("instrument", "inst", build_instruments),
    ("curve", "curve", build_curves),
    ("scenario", "scen", build_scenarios),
    ("backtest", "bt", build_backtests),
    ("document", "doc", build_documents),
)


def build_corpus() -> list[dict[str, object]]:
    """Every document of every tenant, sorted by id; raises if a text breaks the length rules."""
    out = []
    for t in TENANTS:
        for kind, abbr, builder in BUILDERS:
            # One stream per tenant and type: editing one builder leaves the others' output alone.
            rng = random.Random(f"{SEED}:{t.id}:{kind}")
            for i, d in enumerate(builder(rng, t), start=1):
                n = nwords(str(d["text"]))
                if not MIN_WORDS <= n <= MAX_WORDS:
                    raise ValueError(f"{t.prefix} {kind} {d['title']!r}: {n} words")
                out.append(
                    {
                        "id": f"{t.prefix}-{abbr}-{i:04d}",
                        "tenant_id": t.id,
                        "type": kind,
                        "title": d["title"],
                        "text": d["text"],
                        "tags": d["tags"],
                        "updated_at": d["updated_at"],
                    }
                )
    return sorted(out, key=lambda d: str(d["id"]))


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the JSONL corpus")
    args = parser.parse_args(argv)
    docs = build_corpus()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(d, ensure_ascii=False) for d in docs]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(docs)} documents to {args.out}")
    return args.out


if __name__ == "__main__":
    main()
