"""The search configuration: modes, limits and the fusion that a quality report judges and the
bundle serves (FusionWeights). Plain data: no database, no Dagster."""

from __future__ import annotations

from dataclasses import dataclass
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
