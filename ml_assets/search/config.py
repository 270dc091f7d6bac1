"""The search configuration: modes, limits and the fusion that a quality report judges and the
bundle serves (FusionWeights). Plain data: no database, no Dagster."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Mode = Literal["hybrid", "vector", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "lexical")
MAX_LIMIT = 100
# Lexical search ranks at most this many documents (FusionWeights.lexical_budget): those holding
# the query's rarest lexemes. The default of configurations from before BM25.
LEXICAL_CANDIDATES = 1000
# Vector search scans a tenant with at most this many documents exactly (recall 1.0).
EXACT_SCAN_MAX_DOCS = 2_000
DEFAULT_EF_SEARCH = 100

# How hybrid fuses its two lists: reciprocal ranks, or a convex combination of scores
# normalised per query (min-max or z-score) over the union of both candidate lists.
FUSION_METHODS = ("rrf", "minmax", "zscore")
# How lexical search scores its candidates.
RANKERS = ("bm25", "ts_rank_cd")
# What the query-adaptive lexical weight follows, each a number in [0, 1]: "known_terms" the
# share of the query's lexemes that the tenant holds, "query_terms" the number of lexemes
# over QUERY_TERMS_CAP (at most 1), "top_match" the share of the query's IDF that the top
# lexical hit holds. "none": a fixed weight.
ADAPT_FEATURES = ("none", "known_terms", "query_terms", "top_match")
QUERY_TERMS_CAP = 10
# What scales hybrid's feedback step (FusionWeights.feedback): "none" a fixed weight, "top_match"
# times the share of the query's IDF that the top lexical hit holds (a lexical list that
# matches little of the query moves the query vector little).
FEEDBACK_GATES = ("none", "top_match")
MAX_FEEDBACK_DOCS = 10
MAX_CANDIDATES = 200
MAX_LEXICAL_BUDGET = 10_000


@dataclass(frozen=True)
class FusionWeights:
    """The search configuration that a quality report judges and the service serves.

    Hybrid score = `vector` * V + w * L, where w = `lexical`, or with `adapt` set
    w = `lexical` + (`lexical_at_1` - `lexical`) * feature (the feature in [0, 1]).
    `method` "rrf": V = 1/(k + vector rank), L = 1/(k + lexical rank) (0 when not in that
    list); "minmax"/"zscore": V and L are the cosine similarity and the lexical score of each
    document in either list, normalised over those documents. Each list holds `candidates`.
    Lexical search ranks by `ranker`: BM25 (`k1`, `b`; IDF and average document length of the
    tenant) or ts_rank_cd, at most `lexical_budget` documents: those holding the query's
    rarest lexemes. Equal scores go to the smaller doc_id.

    Lexical feedback (`feedback` > 0, hybrid only): the vector list is searched with the query's
    embedding plus `feedback` (times the top lexical hit's share of the query's IDF with
    `feedback_gate` "top_match") times the mean embedding of the top `feedback_docs` lexical
    hits, and V is the cosine to that vector: documents like the ones that match the query's
    words join the vector list, whose own words the query does not share.

    The field defaults are the configuration from before BM25 (RRF over ts_rank_cd), so a
    stored configuration keeps its meaning; DEFAULT_FUSION is what search uses given none.
    """

    vector: float = 1.0
    lexical: float = 0.5
    k: int = 60
    candidates: int = 50
    method: str = "rrf"
    ranker: str = "ts_rank_cd"
    k1: float = 1.2
    b: float = 0.75
    adapt: str = "none"
    lexical_at_1: float = 0.0
    lexical_budget: int = LEXICAL_CANDIDATES
    feedback: float = 0.0
    feedback_docs: int = 3
    feedback_gate: str = "none"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("method", FUSION_METHODS),
            ("ranker", RANKERS),
            ("adapt", ADAPT_FEATURES),
            ("feedback_gate", FEEDBACK_GATES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if min(self.vector, self.lexical, self.lexical_at_1, self.feedback) < 0:
            raise ValueError("fusion weights must be >= 0")
        if not 1 <= self.candidates <= MAX_CANDIDATES:
            raise ValueError(f"candidates must be within 1..{MAX_CANDIDATES}")
        if not 1 <= self.lexical_budget <= MAX_LEXICAL_BUDGET:
            raise ValueError(f"lexical_budget must be within 1..{MAX_LEXICAL_BUDGET}")
        if self.k < 0 or self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError("need k >= 0, k1 >= 0 and 0 <= b <= 1")
        if not 1 <= self.feedback_docs <= MAX_FEEDBACK_DOCS:
            raise ValueError(f"feedback_docs must be within 1..{MAX_FEEDBACK_DOCS}")
        if "top_match" in (self.adapt, self.feedback_gate) and self.ranker != "bm25":
            raise ValueError("'top_match' (adapt or feedback_gate) needs the bm25 ranker")

    @property
    def lexical_weight_at_1(self) -> float:
        """The lexical weight when the feature is 1 (`lexical` when not adaptive)."""
        return self.lexical_at_1 if self.adapt != "none" else self.lexical


# What search uses when given no configuration: what search_quality_report chose on the tune
# splits of both labelled sets with the packaged int8 embedder (index layout 2: identifiers
# split into words, the title counted twice): z-scored scores over the top 100 of each list,
# the lexical weight 1.0 - 0.7 x the query's length in lexemes over QUERY_TERMS_CAP (a long
# natural-language question leans on the vector side); BM25 k1 0.9, b 0.3, over at most 500
# candidates (not tuned: the labelled sets rank the same from 300 up; at 100,000 documents 1000
# costs about 5 ms more at p95). No lexical feedback: tune reports it but does not choose it
# (search_tuning.FEEDBACK_CHOOSABLE). The service passes the configuration its bundle holds.
DEFAULT_FUSION = FusionWeights(
    vector=1.0,
    lexical=1.0,
    k=60,
    candidates=100,
    method="zscore",
    ranker="bm25",
    k1=0.9,
    b=0.3,
    adapt="query_terms",
    lexical_at_1=0.3,
    lexical_budget=500,
)


SEARCH_SERVING_SCHEMA = "ml-assets.search-serving.v1"
# pgvector's range for hnsw.ef_search.
MAX_EF_SEARCH = 1000
_SERVING_KEYS = (
    "schema",
    "embedder_sha256",
    "fusion",
    "ef_search",
    "exact_scan_max_docs",
    "limit_evaluated",
)


def _whole(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number within {low}..{high}, got {value!r}")
    return value


@dataclass(frozen=True)
class SearchServing:
    """Every parameter a search quality report judged, which the bundle carries and the service
    applies to the SQL it runs: the fusion, the HNSW `ef_search`, the size up to which a tenant
    is scanned exactly, the limit the report scored, and the embedder the figures hold for.

    The JSON form (`to_json`, schema ml_assets/schemas/ml.search.serving.v1.json) is the report's
    `search_config`; `from_json` refuses unknown keys and values out of range, so a bundle can
    never serve a parameter nobody judged."""

    embedder_sha256: str
    fusion: FusionWeights = DEFAULT_FUSION
    ef_search: int = DEFAULT_EF_SEARCH
    exact_scan_max_docs: int = EXACT_SCAN_MAX_DOCS
    limit_evaluated: int = 10

    def __post_init__(self) -> None:
        sha = self.embedder_sha256
        if not (
            isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)
        ):
            raise ValueError(f"embedder_sha256 must be a sha256 in hex, got {sha!r}")
        _whole("ef_search", self.ef_search, 1, MAX_EF_SEARCH)
        _whole("exact_scan_max_docs", self.exact_scan_max_docs, 0, 10**9)
        _whole("limit_evaluated", self.limit_evaluated, 1, MAX_LIMIT)

    def scan_options(self) -> dict[str, int]:
        """The vector-scan keyword arguments of search.run_search/search (beside `fusion`)."""
        return {"ef_search": self.ef_search, "exact_scan_max_docs": self.exact_scan_max_docs}

    def to_json(self) -> dict:
        return {
            "schema": SEARCH_SERVING_SCHEMA,
            "embedder_sha256": self.embedder_sha256,
            "fusion": asdict(self.fusion),
            "ef_search": self.ef_search,
            "exact_scan_max_docs": self.exact_scan_max_docs,
            "limit_evaluated": self.limit_evaluated,
        }

    @classmethod
    def from_json(cls, data: object, embedder_sha256: str | None = None) -> SearchServing:
        """Parse a judged configuration. One without `schema` is a report's from before this
        contract ({fusion, ef_search, exact_scan_max_docs, limit_evaluated}): it holds for the
        `embedder_sha256` its record names, which the caller passes."""
        if not isinstance(data, dict):
            raise ValueError(f"a search configuration is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_SERVING_KEYS))
        if unknown:
            raise ValueError(f"unknown keys in the search configuration: {unknown}")
        schema = data.get("schema")
        if schema is not None and schema != SEARCH_SERVING_SCHEMA:
            raise ValueError(
                f"search configuration schema {schema!r}, this code reads {SEARCH_SERVING_SCHEMA!r}"
            )
        sha = data.get("embedder_sha256", embedder_sha256 if schema is None else None)
        if embedder_sha256 is not None and sha != embedder_sha256:
            raise ValueError(
                f"the search configuration was judged for embedder {str(sha)[:12]}, "
                f"its record names {embedder_sha256[:12]}"
            )
        fusion = data.get("fusion")
        if not isinstance(fusion, dict):
            raise ValueError("the search configuration has no fusion object")
        known = set(FusionWeights.__dataclass_fields__)
        if set(fusion) - known:
            raise ValueError(f"unknown fusion keys: {sorted(set(fusion) - known)}")
        missing = [
            k for k in ("ef_search", "exact_scan_max_docs", "limit_evaluated") if k not in data
        ]
        if missing:
            raise ValueError(f"the search configuration does not say {missing}")
        try:
            weights = FusionWeights(**fusion)
        except TypeError as exc:  # a number given as text, say: min() of str and float
            raise ValueError(f"fusion: {exc}") from None
        return cls(
            embedder_sha256=sha,  # type: ignore[arg-type]
            fusion=weights,
            ef_search=data["ef_search"],
            exact_scan_max_docs=data["exact_scan_max_docs"],
            limit_evaluated=data["limit_evaluated"],
        )
