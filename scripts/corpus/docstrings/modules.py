"""Which standard-library modules are documented, and the tenant each belongs to."""

from __future__ import annotations

TENANTS = {
    "stdlib-data": "sd",  # data formats, text, numbers, dates, data structures, hashing
    "stdlib-systems": "ss",  # files, processes, concurrency, networking, logging
    "stdlib-devtools": "sv",  # testing, debugging, profiling, introspection (the small one)
}

# module | tenant prefix | topic. Order matters: an object reachable from two modules is
# documented once, under the first one listed.
MODULE_TABLE = """
json|sd|data-formats
csv|sd|data-formats
configparser|sd|data-formats
tomllib|sd|data-formats
xml.etree.ElementTree|sd|data-formats
html|sd|data-formats
html.parser|sd|data-formats
pickle|sd|data-formats
struct|sd|data-formats
base64|sd|data-formats
binascii|sd|data-formats
plistlib|sd|data-formats
mimetypes|sd|data-formats
zipfile|sd|archives
tarfile|sd|archives
gzip|sd|archives
zlib|sd|archives
re|sd|text
string|sd|text
textwrap|sd|text
difflib|sd|text
unicodedata|sd|text
pprint|sd|text
codecs|sd|text
shlex|sd|text
decimal|sd|numbers
fractions|sd|numbers
statistics|sd|numbers
random|sd|numbers
math|sd|numbers
cmath|sd|numbers
datetime|sd|dates-times
calendar|sd|dates-times
zoneinfo|sd|dates-times
collections|sd|data-structures
heapq|sd|data-structures
bisect|sd|data-structures
array|sd|data-structures
copy|sd|data-structures
enum|sd|data-structures
dataclasses|sd|data-structures
itertools|sd|data-structures
functools|sd|data-structures
operator|sd|data-structures
graphlib|sd|data-structures
hashlib|sd|security
hmac|sd|security
secrets|sd|security
uuid|sd|security
sqlite3|sd|databases
os|ss|files
os.path|ss|files
pathlib|ss|files
shutil|ss|files
glob|ss|files
fnmatch|ss|files
tempfile|ss|files
io|ss|files
mmap|ss|files
sys|ss|processes
subprocess|ss|processes
signal|ss|processes
time|ss|processes
threading|ss|concurrency
queue|ss|concurrency
concurrent.futures|ss|concurrency
asyncio|ss|concurrency
sched|ss|concurrency
socket|ss|networking
ssl|ss|networking
select|ss|networking
selectors|ss|networking
http.client|ss|networking
http.server|ss|networking
urllib.parse|ss|networking
urllib.request|ss|networking
ipaddress|ss|networking
smtplib|ss|email
email|ss|email
email.message|ss|email
email.utils|ss|email
logging|ss|logging
logging.handlers|ss|logging
argparse|sv|cli
unittest|sv|testing
doctest|sv|testing
timeit|sv|profiling
cProfile|sv|profiling
pstats|sv|profiling
traceback|sv|debugging
warnings|sv|debugging
contextlib|sv|language
abc|sv|language
weakref|sv|language
gc|sv|language
"""

TENANT_OF_PREFIX = {p: t for t, p in TENANTS.items()}


def listed_modules() -> list[tuple[str, str, str]]:
    rows = []
    for line in MODULE_TABLE.strip().splitlines():
        name, prefix, topic = line.split("|")
        rows.append((name, TENANT_OF_PREFIX[prefix], topic))
    names = [r[0] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError("MODULE_TABLE lists a module twice")
    return rows
