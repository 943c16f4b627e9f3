from __future__ import annotations

import math
import random
from typing import Any

import pytest

from services.memory.chunking import chunk_document
from services.memory.errors import ModelUnavailableError
from services.memory.retrieval import (
    BM25Index,
    HybridRetriever,
    IndexFullError,
    OpenAIEmbedder,
    VectorIndex,
    reciprocal_rank_fusion,
)

pytestmark = pytest.mark.unit

# 56 topics, each with distinctive vocabulary; the filler is shared by all.
TOPICS = """
volcano lava magma eruption crater | glacier ice moraine crevasse meltwater
sourdough starter flour dough fermentation | chess bishop gambit checkmate opening
kubernetes pod deployment kubelet ingress | beekeeping hive queen honeycomb pollen
violin bow rosin fingerboard concerto | marathon stride pacing endurance hydration
photosynthesis chlorophyll stomata sunlight glucose
mortgage lender amortization escrow refinancing
saturn rings titan cassini orbit | espresso crema portafilter barista grind
origami crease fold paper crane | tides moon gravity estuary ebb
mushroom mycelium spores forager chanterelle | cryptography cipher key hashing signature
knitting yarn purl stitch needles | surfing wave swell reef board
compost worms nitrogen carbon bin | lighthouse keeper lantern fog beacon
dinosaur fossil jurassic raptor paleontology | tennis serve racket volley deuce
pottery kiln glaze clay wheel | submarine sonar periscope ballast torpedo
vaccine antibody immune antigen booster | railway locomotive timetable sleeper gauge
wine vineyard tannin grape harvest | skateboard ollie ramp deck kickflip
opera aria soprano libretto tenor | bicycle derailleur chain saddle spokes
earthquake fault seismic richter tremor | perfume fragrance notes musk distillation
chocolate cacao tempering truffle praline | falconry falcon hood jesses lure
aquarium filter cichlid coral salinity | calligraphy nib ink brush lettering
rust borrow lifetime ownership cargo | tea oolong steeping matcha teapot
archery arrow quiver fletching bowstring | desert dune oasis camel sandstorm
dentist molar enamel cavity floss | jazz saxophone improvisation swing bebop
solar panel inverter photovoltaic battery | sailing mast keel tack regatta
bonsai pruning wiring juniper pot | wildfire ember firebreak smoke evacuation
cheese rennet curd brie aging | typography kerning serif typeface leading
ballet pirouette pointe tutu choreography | quantum qubit entanglement superposition decoherence
glassblowing furnace molten pipe annealing | genealogy ancestry census lineage surname
carpentry chisel dovetail plane lumber | meteorology barometer humidity forecast cyclone
podcast microphone episode host audio | robotics actuator servo gripper sensor
"""
FILLER = [
    "This guide explains the basics in plain words.",
    "Many people find the topic interesting at first.",
    "Practice and patience help a great deal over time.",
    "There are common mistakes that beginners often make.",
    "Experts recommend starting small and learning step by step.",
]


def corpus() -> dict[str, tuple[str, list[str]]]:
    rng = random.Random(1234)
    docs: dict[str, tuple[str, list[str]]] = {}
    for group in TOPICS.replace("\n", "|").split("|"):
        if not group.strip():
            continue
        words = group.split()
        name, vocab = words[0], words
        sentences = [
            f"The {vocab[1]} and the {vocab[2]} matter for {name}.",
            f"Understanding {vocab[3]} is key when studying {name}.",
            f"Notes on {vocab[4]} and {vocab[1]} complete the picture.",
            *rng.sample(FILLER, 3),
        ]
        rng.shuffle(sentences)
        docs[f"doc-{name}"] = (" ".join(sentences), vocab)
    return docs


def test_generated_corpus_is_big_and_distinct() -> None:
    docs = corpus()
    assert len(docs) >= 50
    assert len({text for text, _ in docs.values()}) == len(docs)


def test_bm25_ranks_the_right_document_first() -> None:
    docs = corpus()
    index = BM25Index()
    for doc_id, (text, _) in docs.items():
        index.add(doc_id, text)
    for doc_id, (_, vocab) in docs.items():
        query = f"how does {vocab[3]} relate to {vocab[1]}? beginners guide"
        results = index.search(query, k=5)
        assert results[0][0] == doc_id, (query, results)
        assert results[0][1] > results[1][1]


def test_bm25_on_chunks_finds_the_right_source() -> None:
    docs = corpus()
    index = BM25Index()
    chunk_source: dict[str, str] = {}
    for doc_id, (text, _) in docs.items():
        for chunk in chunk_document(text, source=doc_id, max_tokens=24, overlap_tokens=4):
            index.add(chunk.id, chunk.index_text)
            chunk_source[chunk.id] = doc_id
    assert len(index) > len(docs)
    for doc_id, (_, vocab) in list(docs.items())[::5]:
        [(best, _)] = index.search(f"{vocab[4]} {vocab[1]}", k=1)
        assert chunk_source[best] == doc_id


def test_bm25_score_matches_the_okapi_formula() -> None:
    index = BM25Index(stemming=False)
    index.add("a", "apple banana apple")
    index.add("b", "banana cherry")
    index.add("c", "cherry date elder fig")
    avgdl = (3 + 2 + 4) / 3
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    tf, dl = 2, 3
    expected = idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))
    [(doc, score)] = index.search("apple", k=3)
    assert doc == "a"
    assert score == pytest.approx(expected)
    assert index.search("zzz") == []
    assert index.remove("a")
    assert not index.remove("a")
    assert index.search("apple") == []
    assert [d for d, _ in index.search("banana cherry", k=5)] == ["b", "c"]


def test_bm25_readding_replaces_a_document() -> None:
    index = BM25Index()
    index.add("x", "kiwi")
    index.add("x", "mango")
    assert index.search("kiwi") == []
    assert [d for d, _ in index.search("mango")] == ["x"]
    assert len(index) == 1


def test_vector_index_cosine_top_k() -> None:
    index = VectorIndex()
    index.add("east", [1.0, 0.0])
    index.add("north", [0.0, 2.0])
    index.add("north-east", [3.0, 3.0])
    results = index.search([1.0, 0.2], k=2)
    assert [r[0] for r in results] == ["east", "north-east"]
    assert results[0][1] == pytest.approx(1 / math.sqrt(1.04))
    assert index.search([1.0, 0.2], k=2, allow=lambda i: i != "east")[0][0] == "north-east"
    assert index.remove("east")
    assert len(index) == 2


def test_vector_index_rejects_bad_vectors_and_overflow() -> None:
    index = VectorIndex(max_items=2)
    index.add("a", [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="dimension"):
        index.add("b", [1.0, 0.0])
    with pytest.raises(ValueError, match="norm"):
        index.add("b", [0.0, 0.0, 0.0])
    index.add("b", [0.0, 1.0, 0.0])
    index.add("b", [0.0, 0.0, 1.0])  # replacing is not growing
    with pytest.raises(IndexFullError):
        index.add("c", [1.0, 1.0, 0.0])


def test_reciprocal_rank_fusion_math() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["c"] == pytest.approx(1 / 63)
    assert fused["d"] == pytest.approx(1 / 62)
    order = [i for i, _ in reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], k=60)]
    assert order == ["b", "a", "d", "c"]
    tie = [i for i, _ in reciprocal_rank_fusion([["x"], ["y"]], k=1)]
    assert tie == ["x", "y"]
    assert reciprocal_rank_fusion([]) == []
    assert dict(reciprocal_rank_fusion([["a", "a"]], k=0)) == {"a": 1.0}


CONCEPTS = [
    {"car", "automobile", "vehicle", "sedan"},
    {"repair", "maintenance", "fix", "service"},
    {"dog", "puppy", "canine", "hound"},
    {"food", "meal", "dinner", "cuisine"},
]


def concept_embed(text: str) -> list[float]:
    """A toy semantic space: synonyms share a dimension; a small bias avoids zero vectors."""
    words = {w.strip(".,?!").lower() for w in text.split()}
    return [float(len(words & group)) for group in CONCEPTS] + [0.01]


class FakeEmbedder:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[list[str]] = []

    async def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(texts)
        if self.fail:
            raise ModelUnavailableError("embeddings down")
        return [concept_embed(t) for t in texts]


async def build(embedder: Any) -> HybridRetriever:
    retriever = HybridRetriever(embedder=embedder)
    texts = {
        "cars.md": "Sedan maintenance schedule: change the oil every year.",
        "dogs.md": "Puppy training needs patience and treats.",
        "meals.md": "A quick dinner: pasta with tomato sauce.",
        "oil.md": "Olive oil is pressed from olives.",
    }
    for source, text in texts.items():
        await retriever.add(chunk_document(text, source=source))
    return retriever


async def test_hybrid_finds_synonyms_that_bm25_misses() -> None:
    embedder = FakeEmbedder()
    retriever = await build(embedder)
    bm25_only = await build(None)
    query = "automobile service"
    assert (await bm25_only.search(query)).hits == []
    result = await retriever.search(query, k=2)
    assert result.mode == "hybrid"
    assert result.hits[0].source == "cars.md"
    assert result.hits[0].vector_rank == 1
    assert result.hits[0].bm25_rank is None
    both = await retriever.search("sedan oil", k=3)
    top = both.hits[0]
    assert top.source == "cars.md"
    assert top.bm25_rank == 1
    assert top.vector_rank == 1
    assert top.score == pytest.approx(2 / 61)


async def test_hybrid_degrades_to_bm25_when_embeddings_fail() -> None:
    embedder = FakeEmbedder()
    retriever = await build(embedder)
    embedder.fail = True
    result = await retriever.search("olive oil", k=2)
    assert result.mode == "bm25"
    assert result.vector_error == "embeddings down"
    assert result.hits[0].source == "oil.md"


async def test_failed_embedding_on_add_leaves_index_unchanged() -> None:
    retriever = HybridRetriever(embedder=FakeEmbedder(fail=True))
    with pytest.raises(ModelUnavailableError):
        await retriever.add(chunk_document("text about cars", source="a"))
    assert len(retriever) == 0


async def test_filters_and_remove_source() -> None:
    retriever = await build(FakeEmbedder())
    result = await retriever.search("oil", k=5, filters={"source": "oil.md"})
    assert {h.source for h in result.hits} == {"oil.md"}
    result = await retriever.search("oil", k=5, filters={"source_prefix": "car"})
    assert {h.source for h in result.hits} == {"cars.md"}
    with pytest.raises(ValueError, match="unknown knowledge filter"):
        await retriever.search("oil", filters={"tenant": "x"})
    assert retriever.remove_source("cars.md") == 1
    assert all(h.source != "cars.md" for h in (await retriever.search("sedan oil")).hits)
    assert (await retriever.search("   ")).hits == []


async def test_openai_embedder_batches_and_orders_by_index(fake_openai: Any) -> None:
    client = fake_openai(embed=concept_embed)
    embedder = OpenAIEmbedder(client, "embed-small", timeout=4.0, batch_size=2)
    vectors = await embedder.embed(["car", "dog", "dinner"])
    assert vectors == [concept_embed("car"), concept_embed("dog"), concept_embed("dinner")]
    assert [c["input"] for c in client.embed_calls] == [["car", "dog"], ["dinner"]]
    assert client.embed_calls[0]["model"] == "embed-small"
    assert client.embed_calls[0]["timeout"] == 4.0
    with pytest.raises(ModelUnavailableError):
        await OpenAIEmbedder(fake_openai(), "m").embed(["x"])
