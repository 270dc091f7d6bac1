"""The labelled queries of the docs set, written in a user's words."""

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
