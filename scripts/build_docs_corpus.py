"""Build ml_assets/data/docs_corpus.jsonl and docs_queries.jsonl from Python's own docstrings.

A second labelled search set on real text that nobody in this project wrote: the docstrings of
a fixed list of standard-library modules, their public classes, functions and methods, chunked
into passages. Each module belongs to one of three tenants by topic area. The labelled queries
live in QUERY_TABLE below, written in a user's words, and name their relevant passages by title
(qualified name, plus `#n` for the n-th passage of a long docstring); the build resolves them to
doc ids and fails loudly when a title is missing, so the labels survive a rebuild.

The text depends on the interpreter: the shipped files come from CPython PYTHON_VERSION (the
project venv); another version writes only elsewhere, and only with --force. `pydoc_data` (the
reference manual's topics) is never imported: that text is reserved for an independent check.

    .venv/bin/python scripts/build_docs_corpus.py     # ~0.5 s; prints the counts per tenant
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

PYTHON_VERSION = "3.11.7"
DATA = Path(__file__).resolve().parents[1] / "ml_assets" / "data"
OUT = DATA / "docs_corpus.jsonl"
QUERIES_OUT = DATA / "docs_queries.jsonl"
TENANTS_OUT = DATA / "docs_tenants.json"
# Fixed stamp (the 3.11.7 release day): the corpus must not depend on when it was built.
UPDATED_AT = "2023-12-04T00:00:00Z"
# The loader knows five types; a docstring passage is a "document", its kind goes in the tags.
DOC_TYPE = "document"
MIN_DOC_WORDS = 6  # shorter docstrings ("Return self.") carry nothing to search for
MIN_WORDS, MAX_WORDS = 60, 180  # passage size when a docstring is chunked
FORBIDDEN = "pydoc_data"

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
# Public aliases of a class documented under its better-known name (socket.socket subclasses
# _socket.socket, which socket exports as SocketType).
SKIP = frozenset({"socket.SocketType"})
# Hooks a running program may replace (pytest swaps threading.excepthook and
# sys.unraisablehook): the module keeps the original as __name__, which is what gets documented.
HOOKS = frozenset({"breakpointhook", "displayhook", "excepthook", "unraisablehook"})


@dataclasses.dataclass(frozen=True)
class Passage:
    id: str
    tenant_id: str
    title: str
    text: str
    tags: tuple[str, ...]
    qualname: str
    part: int
    parts: int


def _modules() -> list[tuple[str, str, str]]:
    rows = []
    for line in MODULE_TABLE.strip().splitlines():
        name, prefix, topic = line.split("|")
        rows.append((name, TENANT_OF_PREFIX[prefix], topic))
    names = [r[0] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError("MODULE_TABLE lists a module twice")
    return rows


def _own_doc(obj: object) -> str:
    """The object's own docstring, cleaned (inspect.getdoc without inheriting a base's)."""
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _with_init(cls: type, doc: str) -> str:
    """A class's docstring followed by its own __init__'s, as help() shows them together."""
    init = vars(cls).get("__init__")
    extra = _own_doc(init) if inspect.isfunction(init) else ""
    if not extra or " ".join(extra.split()) in " ".join(doc.split()):
        return doc
    return f"{doc}\n\n{extra}" if doc else extra


def _is_routine(obj: object) -> bool:
    return inspect.isroutine(obj) or isinstance(obj, classmethod | staticmethod)


def _public_members(module: ModuleType) -> list[tuple[str, object]]:
    """(name, object) for the module's public classes and functions, sorted by name."""
    name = module.__name__
    listed = getattr(module, "__all__", None)
    out = []
    for attr in sorted(listed if listed is not None else vars(module)):
        if attr.startswith("_") or not hasattr(module, attr):
            continue
        obj = getattr(module, attr)
        if attr in HOOKS and _is_routine(vars(module).get(f"__{attr}__")):
            obj = vars(module)[f"__{attr}__"]
        if not (inspect.isclass(obj) or _is_routine(obj)):
            continue
        alias_of = getattr(obj, "__name__", attr)
        if alias_of != attr and getattr(module, alias_of, None) is obj:
            continue  # array.ArrayType is array.array: document it under its own name
        if listed is None:
            # Without __all__, keep what the module (or its C accelerator) defines itself.
            origin = getattr(obj, "__module__", None) or ""
            short = name.rsplit(".", 1)[-1]
            if origin not in (name, f"_{short}") and not origin.startswith(f"{name}."):
                continue
        out.append((attr, obj))
    # Functions first: random.choice is documented as itself, not as random.Random.choice.
    return sorted(out, key=lambda m: (inspect.isclass(m[1]), m[0]))


def _class_members(cls: type) -> list[tuple[str, str, object]]:
    """(name, kind, object) for a class's public methods and properties, sorted by name.

    Members come from the class itself and from private bases it wraps (socket.socket over
    _socket.socket, io classes over _io): those bases are documented nowhere else.
    """
    found: dict[str, tuple[str, object]] = {}
    for klass in cls.__mro__:
        if klass is object or (klass is not cls and not klass.__module__.startswith("_")):
            continue
        for attr, obj in vars(klass).items():
            if attr.startswith("_") or attr in found:
                continue
            if _is_routine(obj):
                found[attr] = ("method", obj)
            elif isinstance(obj, property) or inspect.isgetsetdescriptor(obj):
                found[attr] = ("property", obj)
    return [(a, k, o) for a, (k, o) in sorted(found.items())]


def _docstrings(module: ModuleType) -> Iterator[tuple[str, str, object]]:
    """(qualified name, kind, object) for the module and its public API, in a fixed order."""
    name = module.__name__ if module.__name__ != "posixpath" else "os.path"
    yield name, "module", module
    for attr, obj in _public_members(module):
        qual = f"{name}.{attr}"
        if qual in SKIP:
            continue
        if inspect.isclass(obj):
            yield qual, "class", obj
            for mattr, kind, mobj in _class_members(obj):
                yield f"{qual}.{mattr}", kind, mobj
        else:
            yield qual, "function", obj


def _words(text: str) -> int:
    return len(text.split())


def _pieces(paragraph: str) -> list[str]:
    """Split one over-long paragraph at line (or sentence) ends into pieces of <= MAX_WORDS."""
    lines = paragraph.split("\n")
    if len(lines) == 1:
        lines = re.split(r"(?<=[.;:])\s+", paragraph)
    out: list[str] = []
    cur: list[str] = []
    for line in lines:
        if cur and _words("\n".join([*cur, line])) > MAX_WORDS:
            out.append("\n".join(cur))
            cur = []
        cur.append(line)
    if cur:
        out.append("\n".join(cur))
    return out


def chunk(doc: str) -> list[str]:
    """Passages of MIN_WORDS..MAX_WORDS words, cut at paragraph boundaries where possible."""
    if _words(doc) <= MAX_WORDS:
        return [doc]
    paras = []
    for p in re.split(r"\n\s*\n", doc):
        if p.strip():
            paras.extend(_pieces(p.strip()) if _words(p) > MAX_WORDS else [p.strip()])
    total = sum(_words(p) for p in paras)
    # Aim for equal passages: n of them, each about total / n words.
    n = -(-total // MAX_WORDS)
    target = total / n
    out: list[list[str]] = [[]]
    size = 0
    for p in paras:
        w = _words(p)
        if out[-1] and (size + w > MAX_WORDS or (size >= target and size >= MIN_WORDS)):
            out.append([])
            size = 0
        out[-1].append(p)
        size += w
    passages = ["\n\n".join(ps) for ps in out]
    # A short tail joins the passage before it when the two still fit loosely together.
    if len(passages) > 1 and _words(passages[-1]) < MIN_WORDS // 2:
        merged = passages[-2] + "\n\n" + passages[-1]
        if _words(merged) <= MAX_WORDS + MIN_WORDS // 2:
            passages[-2:] = [merged]
    return passages


def _import(name: str) -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(name)


def build_corpus() -> list[Passage]:
    """Every passage of every listed module, sorted by id; raises on a broken invariant."""
    seen_objects: dict[int, object] = {}
    seen_docs: set[str] = set()
    passages: list[Passage] = []
    forbidden_before = FORBIDDEN in sys.modules
    modules = [(_import(name), tenant, topic) for name, tenant, topic in _modules()]
    if FORBIDDEN in sys.modules and not forbidden_before:
        raise RuntimeError(f"importing the listed modules imported {FORBIDDEN}; drop the culprit")
    for module, tenant, topic in modules:
        top = module.__name__.split(".")[0] if module.__name__ != "posixpath" else "os"
        for qual, kind, obj in _docstrings(module):
            target = getattr(obj, "__func__", obj)  # bound, class and static methods
            if id(target) in seen_objects:
                continue
            seen_objects[id(target)] = target  # held, so that no id is reused
            doc = _own_doc(obj)
            if kind == "class":
                doc = _with_init(obj, doc)
            norm = " ".join(doc.split())
            if _words(doc) < MIN_DOC_WORDS or norm in seen_docs:
                continue
            if kind == "class" and dataclasses.is_dataclass(obj) and "\n" not in doc:
                if re.fullmatch(rf"{re.escape(obj.__name__)}\(.*\)", doc):
                    continue  # a dataclass's generated "Name(field: type, ...)" says nothing
            seen_docs.add(norm)
            parts = chunk(doc)
            prefix = TENANTS[tenant]
            tags = tuple(dict.fromkeys([top.lower(), kind, topic]))
            for i, text in enumerate(parts, start=1):
                suffix = f" ({i}/{len(parts)})" if len(parts) > 1 else ""
                passages.append(
                    Passage(
                        id=f"{prefix}-{qual}-{i}",
                        tenant_id=tenant,
                        title=f"{qual}{suffix}",
                        text=text,
                        tags=tags,
                        qualname=qual,
                        part=i,
                        parts=len(parts),
                    )
                )
    passages.sort(key=lambda p: p.id)
    ids = [p.id for p in passages]
    if len(set(ids)) != len(ids):
        raise ValueError("two passages share an id")
    for p in passages:
        if FORBIDDEN in p.text or FORBIDDEN in p.title:
            raise ValueError(f"{p.title} mentions {FORBIDDEN}")
    return passages


def _row(p: Passage) -> dict[str, object]:
    return {
        "id": p.id,
        "tenant_id": p.tenant_id,
        "type": DOC_TYPE,
        "title": p.title,
        "text": p.text,
        "tags": list(p.tags),
        "updated_at": UPDATED_AT,
    }


# --------------------------------------------------------------------------------------------
# Labelled queries: a line `id|tenant prefix|split|query`, then indented line(s) naming its
# relevant passages by title, ;-separated: the qualified name of a docstring, with #n for its
# n-th passage when it has several. The first title listed is the best answer; relevance is
# binary in the loader and the metrics. Several other passages may be useful too: the labels
# name the ones that answer the question, checked by reading them.
QUERY_TABLE = """
# stdlib-data
dq001|sd|tune|turn a nested dict into a json string with nice indentation
    json.dumps#1; json#1; json.JSONEncoder#3
dq002|sd|eval|my own class is not json serializable, how do I teach the encoder about it
    json.JSONEncoder.default; json.JSONEncoder#1; json.dumps#2; json.dump#2
dq003|sd|tune|read settings from an ini file with sections
    configparser#1; configparser.RawConfigParser.read; configparser.RawConfigParser.read_file
    configparser#3
dq004|sd|eval|escape < and & before putting user text into a web page
    html.escape
dq005|sd|tune|save a python object to disk and load it back later
    pickle.dump#1; pickle.load; pickle
dq006|sd|eval|struct pack big endian unsigned int
    struct#1; struct#2; struct.pack
dq007|sd|tune|base64 that is safe to put in a url
    base64.urlsafe_b64encode
dq008|sd|eval|unpack every file from a zip into a folder
    zipfile.ZipFile.extractall
dq009|sd|tune|which mode string writes a gzip compressed tarball
    tarfile.open#1; tarfile.open#2; tarfile.TarFile.gzopen
dq010|sd|eval|replace regex matches using a function that computes the replacement
    re.sub; re.Pattern.sub
dq011|sd|tune|get the named groups of a regex match as a dict
    re.Match.groupdict
dq012|sd|eval|break a long paragraph into a list of lines at most 70 characters wide
    textwrap.wrap; textwrap.TextWrapper.wrap; textwrap.TextWrapper#2
dq013|sd|tune|remove the indentation from a triple quoted string
    textwrap.dedent
dq014|sd|eval|show what changed between two versions of a file like diff -u
    difflib.unified_diff#1; difflib.unified_diff#2
dq015|sd|tune|suggest the closest spelling from a list of known words
    difflib.get_close_matches
dq016|sd|eval|round money amounts to exactly two decimal places
    decimal.Decimal.quantize; decimal.Context.quantize
dq017|sd|tune|exact arithmetic with ratios like 1/3 without float rounding errors
    fractions.Fraction
dq018|sd|eval|middle value of a list of numbers
    statistics.median; statistics.median_low; statistics.median_high
dq019|sd|tune|pick 5 random winners from a list with no duplicates
    random.sample
dq020|sd|eval|make random numbers reproducible between runs
    random.seed
dq021|sd|tune|are two floats equal within a tolerance
    math.isclose; cmath.isclose
dq022|sd|eval|count how often each word occurs in a list
    collections.Counter#1; collections.Counter.most_common
dq023|sd|tune|dictionary that creates a missing key automatically with an empty list
    collections.defaultdict
dq024|sd|eval|top n biggest items without sorting the whole list
    heapq.nlargest
dq025|sd|tune|priority queue built on a plain list
    heapq#1; heapq.heappush; heapq.heappop
dq026|sd|eval|insert into a list and keep it sorted
    bisect.insort_right; bisect.insort_left
dq027|sd|tune|shallow copy vs deep copy, what is the difference
    copy#1; copy.deepcopy; copy.copy
dq028|sd|eval|memoize an expensive function
    functools.lru_cache; functools.cache
dq029|sd|tune|itertools groupby consecutive keys
    itertools.groupby
dq030|sd|eval|every pair of items from a list where order does not matter
    itertools.combinations
dq031|sd|tune|flatten a list of lists into one sequence
    itertools.chain.from_iterable; itertools.chain
dq032|sd|eval|sha256 of a big file without reading it all into memory
    hashlib.file_digest; hashlib#2
dq033|sd|tune|generate a random token for a password reset link
    secrets.token_urlsafe; secrets.token_hex; secrets
dq034|sd|eval|compare two secrets in constant time
    secrets.compare_digest
dq035|sd|tune|give each record a random unique id
    uuid#1; uuid#2
dq036|sd|eval|sqlite database that lives only in memory
    sqlite3.connect; sqlite3
dq037|sd|tune|make a dataclass immutable
    dataclasses.dataclass; dataclasses.replace
dq038|sd|eval|sort a list of objects by one of their attributes
    operator.attrgetter
dq039|sd|tune|order tasks so that each one runs after its dependencies
    graphlib.TopologicalSorter; graphlib.TopologicalSorter.static_order
dq040|sd|eval|split a command line string the way the shell does
    shlex.split
dq041|sd|tune|what content type header should I send for a .png file
    mimetypes.guess_type
dq042|sd|eval|pearson r between two lists
    statistics.correlation
dq043|sd|tune|fit a straight line through x y points
    statistics.linear_regression#1; statistics.linear_regression#2
dq044|sd|eval|turn &amp; and &#62; back into normal characters
    html.unescape
dq045|sd|tune|read a huge xml file piece by piece
    xml.etree.ElementTree.iterparse
dq046|sd|eval|percentiles of a dataset
    statistics.quantiles
dq047|sd|tune|how many ways can I choose k things out of n
    math.comb
dq048|sd|eval|zip two lists of different length and pad the shorter one
    itertools.zip_longest
dq049|sd|tune|cartesian product of several lists
    itertools.product
dq050|sd|eval|keep the function name and docstring when writing a decorator
    functools.wraps; functools.update_wrapper
dq051|sd|tune|is this year a leap year
    calendar.isleap
dq052|sd|eval|how many days are in february of a given year
    calendar.monthrange
dq053|sd|tune|what day of the week was a date
    datetime.date.weekday; datetime.date.isoweekday; calendar.weekday
dq054|sd|eval|indent xml output so it is readable
    xml.etree.ElementTree.indent
# stdlib-systems
dq101|ss|tune|run a shell command and capture its output
    subprocess.run#1; subprocess.check_output#1; subprocess.getoutput
dq102|ss|eval|stop a child process that runs too long
    subprocess.run#1; subprocess.TimeoutExpired
dq103|ss|tune|wait for several threads to finish
    threading.Thread.join; concurrent.futures.wait
dq104|ss|eval|parse a url query string into a dict
    urllib.parse.parse_qs; urllib.parse.parse_qsl
dq105|ss|tune|build the ?a=1&b=2 part of a link from a dict of parameters
    urllib.parse.urlencode
dq106|ss|eval|shutil copytree ignore patterns
    shutil.ignore_patterns; shutil.copytree#1; shutil.copytree#2
dq107|ss|tune|delete a folder and everything inside it
    shutil.rmtree
dq108|ss|eval|find all python files in a directory and its subfolders
    glob.glob; pathlib.Path.rglob; os.walk#1
dq109|ss|tune|scratch folder that gets removed automatically when I am done
    tempfile.TemporaryDirectory
dq110|ss|eval|get the file extension from a path
    os.path.splitext; pathlib.PurePath.suffix; pathlib.PurePath.suffixes
dq111|ss|tune|read an environment variable with a fallback value
    os.getenv
dq112|ss|eval|run a function over a list in parallel threads
    concurrent.futures.Executor.map; concurrent.futures.ThreadPoolExecutor
dq113|ss|tune|worker threads pull jobs and I need to know when all jobs are done
    queue.Queue.task_done; queue.Queue.join
dq114|ss|eval|run several coroutines at the same time and collect their results
    asyncio.gather#1; asyncio.as_completed
dq115|ss|tune|give up on an awaitable after 5 seconds
    asyncio.wait_for; asyncio.timeout; asyncio.Timeout
dq116|ss|eval|call blocking code from async code without freezing the event loop
    asyncio.to_thread
dq117|ss|tune|handle ctrl-c myself instead of the default KeyboardInterrupt
    signal.signal; signal.default_int_handler
dq118|ss|eval|high resolution clock for benchmarking code
    time.perf_counter; time.monotonic
dq119|ss|tune|open a tcp client connection with a timeout
    socket.create_connection; asyncio.open_connection
dq120|ss|eval|verify https certificates with sensible defaults
    ssl.create_default_context
dq121|ss|tune|wait until any of several sockets has data to read
    select.select; selectors.BaseSelector.select; selectors
dq122|ss|eval|log in to a mail server before sending
    smtplib.SMTP.login; smtplib.SMTP.starttls
dq123|ss|tune|rfc 2822 date string for an email header
    email.utils.formatdate; email.utils.format_datetime
dq124|ss|eval|split "John Smith <john@example.com>" into name and address
    email.utils.parseaddr
dq125|ss|tune|loop over all parts of a multipart email including attachments
    email.message.Message.walk; email.message.Message.get_payload
    email.message.Message.is_multipart
dq126|ss|eval|rotate log files when they get too big
    logging.handlers.RotatingFileHandler
dq127|ss|tune|start a new log file every midnight
    logging.handlers.TimedRotatingFileHandler
dq128|ss|eval|one line of setup to log to a file with timestamps
    logging.basicConfig#1; logging.basicConfig#2; logging.Formatter#2
dq129|ss|tune|log an error together with the stack trace
    logging.exception; logging.Logger.exception; logging.Logger.error
dq130|ss|eval|parse a cidr block like 192.168.0.0/24
    ipaddress.ip_network; ipaddress.IPv4Network#1
dq131|ss|tune|serve the files in the current folder over http
    http.server.SimpleHTTPRequestHandler
dq132|ss|eval|download a web page with a timeout
    urllib.request.urlopen#1
dq133|ss|tune|exit a script with a non-zero status code
    sys.exit
dq134|ss|eval|run a callback once, 30 seconds from now, in the background
    threading.Timer; sched.scheduler.enter; asyncio.BaseEventLoop.call_later
dq135|ss|tune|when was a file last modified
    os.path.getmtime; os.stat; pathlib.Path.stat
dq136|ss|eval|does a filename match a wildcard like *.txt
    fnmatch.fnmatch; fnmatch.filter; pathlib.PurePath.match
dq137|ss|tune|locate an executable on the PATH like the which command
    shutil.which
dq138|ss|eval|how much free disk space is left
    shutil.disk_usage; os.statvfs
dq139|ss|tune|how many cores does this machine have
    os.cpu_count; os.sched_getaffinity
dq140|ss|eval|create nested directories without failing if they already exist
    os.makedirs; pathlib.Path.mkdir
# stdlib-devtools
dq201|sv|tune|argparse description and epilog for the help text
    argparse.ArgumentParser
dq202|sv|eval|accept a file name on the command line and open it automatically
    argparse.FileType
dq203|sv|tune|show the default values in --help output
    argparse.ArgumentDefaultsHelpFormatter
dq204|sv|eval|skip a test when running on windows
    unittest.skipIf; unittest.skipUnless; unittest.SkipTest
dq205|sv|tune|check that my function raises ValueError in a unit test
    unittest.TestCase.assertRaises; unittest.TestCase.assertRaisesRegex
dq206|sv|eval|compare floating point results in tests up to a few decimal places
    unittest.TestCase.assertAlmostEqual
dq207|sv|tune|run one test body with many inputs and report each failure separately
    unittest.TestCase.subTest
dq208|sv|eval|assert that my code logs a warning message
    unittest.TestCase.assertLogs
dq209|sv|tune|find all test files in a project automatically
    unittest.TestLoader.discover#1
dq210|sv|eval|run the examples in my docstrings as tests
    doctest.testmod#1; doctest#1; doctest.run_docstring_examples
dq211|sv|tune|measure how long a small snippet of code takes
    timeit#1; timeit.Timer; timeit.timeit
dq212|sv|eval|which functions take the most time in my program
    cProfile.run; pstats.Stats#1
dq213|sv|tune|sort profiler output by cumulative time
    pstats.Stats#2
dq214|sv|eval|get the current exception's traceback as a string
    traceback.format_exc; traceback.format_exception
dq215|sv|tune|print where the current function was called from
    traceback.print_stack; traceback.extract_stack
dq216|sv|eval|silence a DeprecationWarning coming from a third party library
    warnings.filterwarnings; warnings.simplefilter; warnings.catch_warnings
dq217|sv|tune|ignore FileNotFoundError when deleting a file that may not exist
    contextlib.suppress
dq218|sv|eval|write a with-statement helper using yield
    contextlib.contextmanager
dq219|sv|tune|open a variable number of files and close them all at the end
    contextlib.ExitStack
dq220|sv|eval|capture what print writes into a string
    contextlib.redirect_stdout
dq221|sv|tune|force subclasses to implement a method
    abc.abstractmethod; abc.ABC
dq222|sv|eval|cache that does not keep its values alive
    weakref.WeakValueDictionary
dq223|sv|tune|run cleanup code when an object is garbage collected
    weakref.finalize
dq224|sv|eval|trigger garbage collection manually
    gc.collect
dq225|sv|tune|find out what is still holding a reference to my object
    gc.get_referrers
"""


@dataclasses.dataclass(frozen=True)
class Query:
    id: str
    tenant_id: str
    split: str
    query: str
    refs: tuple[str, ...]


def parse_queries() -> list[Query]:
    records: list[list[str]] = []
    for n, line in enumerate(QUERY_TABLE.strip().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        if line[0].isspace():
            if not records:
                raise ValueError(f"QUERY_TABLE line {n}: titles before any query")
            records[-1][4] += ";" + line
            continue
        fields = line.split("|")
        if len(fields) != 4:
            raise ValueError(f"QUERY_TABLE line {n}: expected id|tenant|split|query: {line!r}")
        records.append([*fields, ""])
    out = []
    for qid, prefix, split, query, refs in records:
        titles = tuple(r.strip() for r in refs.split(";") if r.strip())
        out.append(Query(qid.strip(), TENANT_OF_PREFIX[prefix], split, query.strip(), titles))
    return out


def resolve(ref: str, by_qual: dict[str, list[Passage]]) -> Passage:
    """The passage a label names: `qualname` (a one-passage docstring) or `qualname#n`."""
    qual, _, part = ref.partition("#")
    found = by_qual.get(qual)
    if not found:
        raise ValueError(f"label {ref!r}: no docstring {qual!r} in the corpus")
    if not part:
        if len(found) > 1:
            raise ValueError(f"label {ref!r}: {qual} has {len(found)} passages; write {qual}#n")
        return found[0]
    if not part.isdigit() or not 1 <= int(part) <= len(found):
        raise ValueError(f"label {ref!r}: {qual} has passages 1..{len(found)}")
    return found[int(part) - 1]


def build_queries(passages: Sequence[Passage]) -> list[dict[str, object]]:
    by_qual: dict[str, list[Passage]] = {}
    for p in sorted(passages, key=lambda p: (p.qualname, p.part)):
        by_qual.setdefault(p.qualname, []).append(p)
    rows = []
    seen: set[str] = set()
    for q in parse_queries():
        if q.id in seen:
            raise ValueError(f"query id {q.id} used twice")
        seen.add(q.id)
        if q.split not in ("tune", "eval"):
            raise ValueError(f"{q.id}: unknown split {q.split!r}")
        rel = [resolve(r, by_qual) for r in q.refs]
        for p in rel:
            if p.tenant_id != q.tenant_id:
                raise ValueError(f"{q.id}: {p.title} belongs to {p.tenant_id}, not {q.tenant_id}")
            if q.query.lower() in p.text.lower() or q.query.lower() in p.title.lower():
                raise ValueError(f"{q.id}: the query is copied from {p.title}")
        ids = list(dict.fromkeys(p.id for p in rel))
        texts = {p.text for p in rel}
        twins = [p.title for p in passages if p.text in texts and p.id not in ids]
        if any(p.tenant_id == q.tenant_id for p in passages if p.title in twins):
            raise ValueError(f"{q.id}: {', '.join(twins)} repeat a labelled text; label them too")
        if not 1 <= len(ids) <= 4:
            raise ValueError(f"{q.id}: {len(ids)} relevant passages; label 1 to 4")
        rows.append(
            {
                "id": q.id,
                "tenant_id": q.tenant_id,
                "query": q.query,
                "relevant_ids": ids,
                "split": q.split,
            }
        )
    return rows


def _write(path: Path, rows: Sequence[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> tuple[Path, Path, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the corpus JSONL")
    parser.add_argument(
        "--queries-out", type=Path, default=QUERIES_OUT, help="where to write the queries JSONL"
    )
    parser.add_argument(
        "--tenants-out", type=Path, default=TENANTS_OUT, help="where to write the tenant list"
    )
    parser.add_argument(
        "--force", action="store_true", help=f"build on a Python other than {PYTHON_VERSION}"
    )
    args = parser.parse_args(argv)
    running = ".".join(map(str, sys.version_info[:3]))
    shipped = {OUT, QUERIES_OUT, TENANTS_OUT} & {args.out, args.queries_out, args.tenants_out}
    if running != PYTHON_VERSION and (shipped or not args.force):
        raise SystemExit(
            f"the shipped docs corpus comes from Python {PYTHON_VERSION}'s docstrings and this is "
            f"{running}: run it with the project venv, or pass --force and other output paths "
            "(to move the shipped set to another Python, change PYTHON_VERSION)"
        )
    passages = build_corpus()
    queries = build_queries(passages)
    _write(args.out, [_row(p) for p in passages])
    _write(args.queries_out, queries)
    args.tenants_out.write_text(json.dumps(sorted(TENANTS), indent=2) + "\n", encoding="utf-8")
    docs = Counter(p.tenant_id for p in passages)
    for tenant in TENANTS:
        splits = Counter(q["split"] for q in queries if q["tenant_id"] == tenant)
        print(
            f"{tenant}: {docs[tenant]} passages, {splits['tune']} tune + {splits['eval']} eval "
            "queries"
        )
    print(
        f"wrote {len(passages)} passages to {args.out}, {len(queries)} queries to "
        f"{args.queries_out} and {len(TENANTS)} tenants to {args.tenants_out} (Python {running})"
    )
    return args.out, args.queries_out, args.tenants_out


if __name__ == "__main__":
    main()
