"""Pure parts of hybrid search: the served configuration's contract and the tuning re-ranker."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, replace

import numpy as np
import pytest

from ml_assets.platform import events
from ml_assets.search.config import DEFAULT_FUSION, FusionWeights
from ml_assets.search.corpus import LabelledQuery
from ml_assets.search.tables import LAYOUT_VERSION, table_name
from ml_assets.search.tuning import Candidates, bm25_scores, family, prepare, rerank


@pytest.mark.parametrize(
    "fusion",
    [
        DEFAULT_FUSION,
        FusionWeights(),
        FusionWeights(method="minmax", ranker="bm25", lexical=0.45, candidates=100),
        FusionWeights(method="rrf", ranker="bm25", k=5, adapt="top_match", lexical_at_1=1.5),
        FusionWeights(
            method="zscore", ranker="bm25", feedback=0.5, feedback_docs=5, feedback_gate="top_match"
        ),
    ],
)
def test_configuration_round_trips_through_json(fusion):
    assert FusionWeights(**json.loads(json.dumps(asdict(fusion)))) == fusion


def test_a_stored_configuration_from_before_bm25_keeps_its_meaning():
    old = FusionWeights(**{"vector": 1.0, "lexical": 0.0, "k": 60, "candidates": 50})
    assert (old.method, old.ranker, old.adapt) == ("rrf", "ts_rank_cd", "none")
    assert old.lexical_budget == 1000
    assert old.feedback == 0.0  # no lexical feedback: the vector list of the query's embedding
    # Not adaptive: the weight is `lexical` whatever lexical_at_1 says.
    assert replace(old, lexical_at_1=0.9).lexical_weight_at_1 == 0.0


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"method": "sum"}, "method"),
        ({"ranker": "bm42"}, "ranker"),
        ({"adapt": "moon"}, "adapt"),
        ({"lexical": -0.1}, ">= 0"),
        ({"candidates": 0}, "candidates"),
        ({"b": 1.5}, "b <= 1"),
        ({"lexical_budget": 0}, "lexical_budget"),
        ({"adapt": "top_match", "ranker": "ts_rank_cd"}, "bm25"),
        ({"feedback": -0.5}, ">= 0"),
        ({"feedback_docs": 0}, "feedback_docs"),
        ({"feedback_docs": 11}, "feedback_docs"),
        ({"feedback_gate": "moon"}, "feedback_gate"),
        ({"feedback": 0.5, "feedback_gate": "top_match"}, "bm25"),
    ],
)
def test_invalid_configurations_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        FusionWeights(**bad)


def _cands(**kw) -> Candidates:
    """Four documents a..d: a, b lexical candidates; b, c, d nearest neighbours."""
    base = dict(
        query=LabelledQuery("q1", "t", "gas storage", ("b",), "tune"),
        lexical_budget=500,
        n_terms=2,
        n_known=2,
        idf=(math.log(1 + 9.5 / 1.5), math.log(1 + 7.5 / 3.5)),
        idf_sum=math.log(1 + 9.5 / 1.5) + math.log(1 + 7.5 / 3.5),
        avgdl=20.0,
        doc_ids=("a", "b", "c", "d"),
        in_lexical=np.array([True, True, False, False]),
        in_vector=np.array([False, True, True, True]),
        dist=np.array([0.9, 0.3, 0.2, 0.4]),
        length=(10, 40, 20, 20),
        terms=((0, 1), (1,), (), (0,)),
        tfs=((1, 2), (3,), (), (1,)),
    )
    return Candidates(**{**base, **kw})


def test_bm25_is_the_textbook_formula_over_the_fetched_frequencies():
    c = _cands()
    k1, b = 1.2, 0.75
    norm = [k1 * (1 - b + b * dl / c.avgdl) for dl in c.length]
    want_a = c.idf[0] * 1 * 2.2 / (1 + norm[0]) + c.idf[1] * 2 * 2.2 / (2 + norm[0])
    got = bm25_scores(c, k1, b)
    assert got[0] == pytest.approx(want_a) and got[2] == 0.0
    # Saturation: one more occurrence helps less than the first; length normalisation: the
    # same frequency in a longer document scores lower.
    assert bm25_scores(_cands(tfs=((2, 2), (3,), (), (1,))), k1, b)[0] - got[0] < got[0]
    assert bm25_scores(_cands(length=(30, 40, 20, 20)), k1, b)[0] < got[0]


def test_rrf_and_convex_fusion_rank_the_pool_with_ties_to_the_smaller_doc_id():
    c = _cands()
    p = prepare(c, 1.2, 0.75)
    assert p.vec_order == [2, 1, 3] and p.lex_order == [0, 1]  # c, b, d; a, b
    rrf = FusionWeights(method="rrf", ranker="bm25", vector=1.0, lexical=1.0, k=60)
    # b is in both lists; a (lexical 1st) and c (vector 1st) tie at 1/61: a < c.
    assert rerank(p, rrf) == ["b", "a", "c", "d"]
    assert rerank(p, replace(rrf, lexical=0.0)) == ["c", "b", "d", "a"]
    minmax = replace(rrf, method="minmax", lexical=0.0)
    assert rerank(p, minmax) == ["c", "b", "d", "a"]  # cosine order
    assert rerank(p, replace(minmax, vector=0.0, lexical=1.0))[0] == "a"  # BM25 order


def test_the_adaptive_weight_follows_the_query_feature():
    # lexical weight 0 at feature 0, 2 at feature 1: "query_terms" = 2/10 -> 0.4.
    f = FusionWeights(
        method="rrf", ranker="bm25", lexical=0.0, lexical_at_1=2.0, adapt="query_terms", k=60
    )
    p = prepare(_cands(), 1.2, 0.75)
    short = rerank(p, f)
    long_query = rerank(prepare(_cands(n_terms=10), 1.2, 0.75), f)
    assert short[0] == "b"
    # At weight 2 a (lexical 1st only) beats c (vector 1st only); at 0.4 it does not.
    assert long_query.index("a") < long_query.index("c") and short.index("c") < short.index("a")
    assert family(f) == "rrf+query_terms" and family(replace(f, adapt="none")) == "rrf"


def test_lexical_feedback_moves_the_vector_list_towards_the_top_lexical_hits():
    # a is the top lexical hit and no near neighbour; d is a's near twin (similarity 0.99), the
    # farthest of the vector list, and matches none of the query's words.
    sim = np.array([[1.0], [0.1], [0.1], [0.99]])
    c = _cands(feedback_ids=(0,), similarity=sim)
    p = prepare(c, 1.2, 0.75)
    plain = FusionWeights(method="zscore", ranker="bm25", lexical=0.0, candidates=2)
    assert rerank(p, plain) == ["c", "b", "a"]  # the pool: c, b nearest, a, b lexical
    fed = replace(plain, feedback=1.0, feedback_docs=1)
    # cos to q + 1.0 x a: d 0.6 + 0.99, a 0.1 + 1.0, c 0.8 + 0.1, b 0.7 + 0.1.
    assert rerank(p, fed) == ["d", "a", "b"]
    # The "top_match" gate scales the step by the share of the query's IDF that a holds (all of
    # it here: a holds both lexemes) and by nothing when the top hit holds none.
    assert rerank(p, replace(fed, feedback_gate="top_match")) == ["d", "a", "b"]
    weak = prepare(
        _cands(
            feedback_ids=(0,), similarity=sim, terms=((), (1,), (), (0,)), tfs=((), (3,), (), (1,))
        ),
        1.2,
        0.75,
    )
    assert weak.lex_order[0] == 1  # b is the top lexical hit now, and not in feedback_ids
    with pytest.raises(ValueError, match="similarities"):
        rerank(weak, replace(fed, feedback_docs=1))
    assert family(fed) == "zscore+feedback"


def test_table_names_carry_the_index_layout_and_fit_the_index_event():
    sha = "0123456789abcdef" * 4
    name = table_name(sha)
    # Another layout is another table: a reindex builds it beside the old one and switches.
    assert name == f"docs_{sha[:14]}l{LAYOUT_VERSION}" and name != f"docs_{sha[:16]}"
    pattern = events.schema(events.INDEX_UPDATED)["properties"]["table"]["pattern"]
    assert re.fullmatch(pattern, name)
