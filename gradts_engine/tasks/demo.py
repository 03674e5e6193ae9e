"""The built-in demo suite: synthetic sibling tasks with a planted answer (DESIGN.md §7).

GradTS ranks candidate auxiliary tasks for a primary task by how well their attention-head
importance matrices agree (Kendall tau-b). To show that the ranking means something, the demo
suite is built so that the right answer is known in advance: it consists of **families of two
sibling tasks** that need the same linguistic skill but share no content vocabulary and no
sentence template. For every task, its sibling should be the top-ranked candidate.

The four families (DESIGN.md §7 measured an earlier suite of this shape with a pretrained
MiniLM: sibling top-ranked in 31 of 32 task-seed cases at 600 training examples, 1 epoch, lr
1e-4, the ``during`` estimator; see ``tests/test_demo_e2e.py`` for what this version gives):

* ``negation`` -- the label is the polarity of an adjective, flipped by "not". ``neg_movie``
  uses film-review vocabulary and past-tense templates; ``neg_product`` uses shopping
  vocabulary and present-tense templates. Each task has 8 common, clearly positive and 8
  clearly negative adjectives and short templates, so that one epoch learns the task (with
  large adjective sets and "not"/"never", generator version 1, it often did not). Half of the
  rows are negated and the adjective's own polarity is balanced against the label, so the bare
  adjective predicts nothing: the negation has to be read.
* ``agreement`` -- is the copula's number right? ``agree_pp`` puts a prepositional-phrase
  attractor between subject and verb ("the keys to the cabinet are/is rusty"); ``agree_rc``
  puts a relative clause there ("the author that the guards admire is/are calm"). Both end in
  "is"/"are" or "was"/"were" and an adjective. The attractor's number differs from the
  subject's in half of the rows, so "agree with the nearest noun" is at chance. One epoch does
  not learn this family (dev accuracy about 0.5, also with easier variants that were tried):
  its siblings are recovered, when they are, from the shared sentence frame ("the N ... the N
  ... is/are ADJ") rather than a learned skill.
* ``pair_match`` -- sentence pairs (``text_a``, ``text_b``): do both sentences mention the
  same person (``match_person``: full names; half of the negatives share the first or last
  name) / the same city (``match_city``)?
* ``topic`` -- sports vs politics headlines (``topic_news``); gardening vs cooking tips
  (``topic_home``). In both, one cue phrase ("the derby", "the tax bill"; "pruning roses",
  "braising lamb") sits in a neutral frame shared by both classes and is followed by a neutral
  tail ("... according to an early report"; "... without spending a fortune on it"), so the
  topic is read from that phrase alone and both tasks have sentences of 10-17 words, longer
  than the other single-sentence families (with short frames, generator version 1, the topic
  siblings were often out-ranked by the agreement tasks).

There is deliberately no sentiment family: §7 found that one shares lexical polarity/class
skills with negation and topic and blurs the planted structure. Content vocabularies are
disjoint between siblings (and, in this version, across the whole suite); only closed-class
function words ("the", "is", "not", ...) are shared. Texts are lowercase words separated by
single spaces, short enough for max length 48 (pairs included).

Generation is pure Python (no torch) and deterministic in ``(task, split, n, seed,
GENERATOR_VERSION)``: a ``random.Random`` seeded from a SHA-256 of ``"task|split|seed|vN"``
(never Python's salted ``hash()``). Splits draw from independent RNG streams and never share a
text: every candidate text (for pairs, the pair) is assigned to exactly one split by a SHA-256
of the task and the text (3/5 train, 1/5 dev, 1/5 test), independent of the seed, and a split
only accepts texts of its own bucket. So no text of one split appears in another split of the
same task, for any seeds. Rows within a split are distinct. Labels are balanced by
construction: rows are drawn in blocks that contain every (label, nuisance) combination once,
in shuffled order with labels paired, so the label counts of any prefix differ by at most one,
and ``generate(t, s, 100)`` is the first 100 rows of ``generate(t, s, 600)``. Each task's text
space holds thousands of distinct texts per label, far more than the default 600/200/200.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_SIZES",
    "DEMO_SUITE",
    "DEMO_TASKS",
    "FAMILIES",
    "GENERATOR_VERSION",
    "SIBLINGS",
    "TASK_INFO",
    "DemoTaskInfo",
    "generate",
    "vocabulary",
]

DEMO_SUITE: str = "demo"
GENERATOR_VERSION: int = 2  # bump whenever the generated rows change: it is part of cache keys
DEFAULT_SIZES: dict[str, int] = {"train": 600, "dev": 200, "test": 200}

# Every candidate text belongs to exactly one split: bucket = sha256(task, text) mod 5.
_SPLIT_BUCKETS: dict[str, frozenset[int]] = {
    "train": frozenset({0, 1, 2}),
    "dev": frozenset({3}),
    "test": frozenset({4}),
}
_N_BUCKETS = 5
_MAX_TRIES_PER_ROW = 20_000
_ATTRACTOR_MISMATCH = 0.5  # agreement: how often the attractor's number differs from the head's


@dataclass(frozen=True)
class DemoTaskInfo:
    """Declaration of one demo task: its family, input fields and label names (index = id)."""

    name: str
    family: str
    description: str
    text_fields: tuple[str, ...]
    labels: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Vocabularies. Each list is used by exactly one task; siblings never share a content word.
# ---------------------------------------------------------------------------------------------
# fmt: off

# -- neg_movie: film reviews, past tense ------------------------------------------------------
_MOVIE_NOUNS = (
    "film", "movie", "plot", "acting", "script", "soundtrack", "cast", "ending", "sequel",
    "screenplay", "cinematography", "dialogue", "storyline", "pacing", "direction", "editing",
    "finale", "premise", "remake", "casting",
)
_MOVIE_GENRES = (
    "comedy", "drama", "western", "musical", "documentary", "cartoon", "biopic", "romance",
    "blockbuster", "mystery", "satire", "melodrama",
)
_MOVIE_POS = (
    "great", "brilliant", "wonderful", "superb", "excellent", "enjoyable", "fun", "amazing",
)
_MOVIE_NEG = (
    "awful", "dreadful", "boring", "dull", "bad", "horrible", "lame", "weak",
)
_MOVIE_TEMPLATES = (
    "the {noun} was {neg}{adj}",
    "i thought the {noun} was {neg}{adj}",
    "the {noun} of this {genre} was {neg}{adj}",
    "that {genre} was {neg}{adj}",
)

# -- neg_product: shopping reviews, present tense / present perfect ---------------------------
_PRODUCT_NOUNS = (
    "blender", "toaster", "vacuum", "kettle", "charger", "backpack", "laptop", "headset",
    "mattress", "stroller", "printer", "router", "speaker", "umbrella", "thermos", "keyboard",
    "suitcase", "hairdryer", "drill", "monitor", "webcam", "treadmill", "earbuds", "tablet",
)
_PRODUCT_COLORS = ("black", "silver", "white", "grey", "navy", "beige", "purple", "orange")
_PRODUCT_POS = (
    "good", "nice", "perfect", "solid", "reliable", "sturdy", "handy", "fantastic",
)
_PRODUCT_NEG = (
    "useless", "rubbish", "faulty", "flimsy", "defective", "shoddy", "noisy", "lousy",
)
_PRODUCT_TEMPLATES = (
    "this {noun} is {neg}{adj}",
    "my {noun} is {neg}{adj}",
    "the {color} {noun} is {neg}{adj}",
    "my {color} {noun} is {neg}{adj}",
)

# -- agree_pp: household objects, copular verbs, prepositional-phrase attractor ---------------
_PP_HEADS = (
    ("key", "keys"), ("lamp", "lamps"), ("box", "boxes"), ("bottle", "bottles"),
    ("drawer", "drawers"), ("jar", "jars"), ("ladder", "ladders"), ("mirror", "mirrors"),
    ("candle", "candles"), ("basket", "baskets"), ("hinge", "hinges"), ("bucket", "buckets"),
    ("shelf", "shelves"), ("brush", "brushes"), ("blanket", "blankets"), ("pillow", "pillows"),
    ("hook", "hooks"), ("lid", "lids"), ("tile", "tiles"), ("handle", "handles"),
    ("rope", "ropes"), ("crate", "crates"),
)
_PP_ATTRACTORS = (
    ("cabinet", "cabinets"), ("cupboard", "cupboards"), ("closet", "closets"),
    ("garage", "garages"), ("attic", "attics"), ("cellar", "cellars"),
    ("staircase", "staircases"), ("fireplace", "fireplaces"), ("porch", "porches"),
    ("wardrobe", "wardrobes"), ("chest", "chests"), ("barn", "barns"),
    ("workbench", "workbenches"), ("hallway", "hallways"), ("doorway", "doorways"),
    ("chimney", "chimneys"),
)
_PP_PREPS = ("to", "of", "near", "behind", "beside", "under", "above", "in", "on", "inside")
_PP_VERBS = (("is", "are"), ("was", "were"))
_PP_COMPLEMENTS = (
    "rusty", "dusty", "cracked", "missing", "crooked", "sticky", "damp", "loose", "heavy",
    "empty", "shiny", "chipped", "tarnished", "warped", "faded", "spotless", "tangled",
    "dented",
)

# -- agree_rc: people, transitive verb in a relative clause, intransitive main verb -----------
_RC_PEOPLE = (
    ("author", "authors"), ("pilot", "pilots"), ("dancer", "dancers"), ("farmer", "farmers"),
    ("teacher", "teachers"), ("surgeon", "surgeons"), ("judge", "judges"), ("nurse", "nurses"),
    ("lawyer", "lawyers"), ("poet", "poets"), ("sailor", "sailors"), ("tailor", "tailors"),
    ("clerk", "clerks"), ("banker", "bankers"), ("plumber", "plumbers"),
    ("soldier", "soldiers"), ("monk", "monks"), ("waiter", "waiters"),
    ("janitor", "janitors"), ("detective", "detectives"), ("architect", "architects"),
    ("guard", "guards"), ("neighbor", "neighbors"), ("student", "students"),
    ("doctor", "doctors"), ("officer", "officers"), ("cousin", "cousins"),
    ("landlord", "landlords"), ("stranger", "strangers"), ("villager", "villagers"),
)
_RC_VERBS = (
    ("likes", "like"), ("admires", "admire"), ("hates", "hate"), ("knows", "know"),
    ("follows", "follow"), ("praises", "praise"), ("trusts", "trust"), ("mocks", "mock"),
    ("envies", "envy"), ("thanks", "thank"), ("blames", "blame"), ("ignores", "ignore"),
    ("fears", "fear"), ("adores", "adore"), ("distrusts", "distrust"),
)
_RC_COPULAS = (("is", "are"), ("was", "were"))
_RC_COMPLEMENTS = (
    "happy", "tired", "angry", "busy", "calm", "shy", "nervous", "proud", "honest",
    "sleepy", "grumpy", "cheerful", "hungry", "lonely", "polite", "rich",
)

# -- match_person: full names in everyday anecdotes --------------------------------------------
_FIRST_NAMES = (
    "maria", "james", "aisha", "kenji", "olga", "pedro", "fatima", "liam", "sofia", "noah",
    "priya", "omar", "elena", "viktor", "chloe", "samuel", "ingrid", "tariq", "hana", "lucas",
    "zara", "mateo", "nadia", "felix", "amara", "hugo", "leila", "oscar", "yuki", "ruben",
)
_LAST_NAMES = (
    "lopez", "carter", "khan", "tanaka", "petrova", "silva", "haddad", "murphy", "rossi",
    "becker", "sharma", "nasser", "novak", "ivanov", "dubois", "okafor", "larsen", "malik",
    "kim", "costa", "fischer", "mendez", "hughes", "adeyemi", "moreau", "santos", "weber",
    "nakamura", "quinn", "varga",
)
_PERSON_A_TEMPLATES = (
    "{p} adopted a stray puppy",
    "{p} repaired a broken bicycle",
    "{p} painted a mural downtown",
    "{p} finished writing a novel",
    "{p} volunteered at the animal shelter",
    "{p} learned to play the violin",
    "{p} knitted a scarf for a friend",
    "{p} found a lost kitten",
    "{p} started a book club",
    "{p} carved a little owl",
)
_PERSON_B_TEMPLATES = (
    "yesterday i ran into {p}",
    "a parcel arrived for {p}",
    "everyone congratulated {p}",
    "my sister wrote an email to {p}",
    "the photo shows {p} smiling",
    "nobody has heard from {p} lately",
    "we threw a surprise party for {p}",
    "the letter was signed by {p}",
    "i borrowed a pen from {p}",
    "{p} called me on sunday",
)

# -- match_city: travel and places ------------------------------------------------------------
_CITIES = (
    "paris", "tokyo", "lima", "cairo", "oslo", "madrid", "berlin", "rome", "dublin", "lisbon",
    "vienna", "prague", "athens", "warsaw", "nairobi", "delhi", "seoul", "bangkok", "sydney",
    "toronto", "chicago", "boston", "denver", "havana", "istanbul", "helsinki", "stockholm",
    "budapest", "brussels", "amsterdam", "geneva", "manila", "jakarta", "santiago", "bogota",
    "montreal", "melbourne", "auckland", "marrakesh", "copenhagen",
)
_CITY_A_TEMPLATES = (
    "the ferry to {c} departs at noon",
    "the night bus to {c} was delayed",
    "we booked a hostel in {c}",
    "our plane landed in {c} after midnight",
    "the cathedral in {c} was packed with tourists",
    "i bought a map of {c}",
    "the hotel in {c} overlooks the harbor",
    "a tram line in {c} reopened",
    "our connecting flight went through {c}",
    "the taxi ride across {c} took ages",
)
_CITY_B_TEMPLATES = (
    "my grandmother grew up in {c}",
    "{c} is famous for its bridges",
    "i mailed a postcard from {c}",
    "rents in {c} are soaring",
    "the museum in {c} closes on mondays",
    "my uncle moved to {c}",
    "traffic in {c} is terrible",
    "{c} has a lovely historic quarter",
    "the subway in {c} runs all night",
    "she studied architecture in {c}",
)

# -- topic_news: sports vs politics headlines -------------------------------------------------
_NEWS_SPORTS = (
    "the derby", "the cup final", "the transfer window", "the striker", "the goalkeeper",
    "the playoffs", "the penalty shootout", "the league table", "the quarterback",
    "the home opener", "the relay team", "the head coach", "the championship", "the semifinal",
    "the tournament", "the pitcher",
)
_NEWS_POLITICS = (
    "the senate", "the budget vote", "the election", "the referendum", "the tax bill",
    "the prime minister", "the coalition", "the ballot count", "the governor", "the parliament",
    "the ministers", "the opposition leader", "the pension reform", "the tariff dispute",
    "the campaign trail", "the chancellor",
)
_NEWS_SOURCES = ("pundits", "insiders", "analysts", "critics", "columnists", "commentators")
_NEWS_SLOTS = ("morning", "evening", "weekend", "midday")
# Neutral frames: the topic is carried by the one cue phrase alone.
_NEWS_TEMPLATES = (
    "{source} say {cue} dominated the {slot} headlines",
    "a fresh row over {cue} erupted this {slot}",
    "{source} weigh in on {cue}",
    "{cue} tops the {slot} bulletin",
    "new poll puts {cue} in the spotlight",
    "{source} slam coverage of {cue}",
    "live updates on {cue} from {source}",
    "what {source} got wrong on {cue}",
)
_NEWS_TAILS = (
    "as the week drew to a close", "according to an early report",
    "in a piece published online", "after a long and eventful week",
    "with more details expected later", "in a story that is still developing",
)

# -- topic_home: gardening vs cooking tips ----------------------------------------------------
_HOME_GARDEN = (
    "pruning roses", "planting tulips", "mulching borders", "repotting ferns", "composting",
    "weeding", "sowing seeds", "watering hydrangeas", "dividing hostas", "deadheading",
    "trimming hedges", "raking leaves", "mowing lawns", "potting seedlings", "staking dahlias",
    "grafting shrubs",
)
_HOME_COOKING = (
    "searing steak", "braising lamb", "roasting chicken", "toasting spices", "making risotto",
    "simmering stock", "baking bread", "whisking eggs", "frying tofu", "poaching salmon",
    "kneading dough", "grilling shrimp", "marinating pork", "seasoning soup",
    "caramelizing onions", "blanching beans",
)
_HOME_PEOPLE = ("neighbour", "aunt", "grandad", "mentor", "flatmate", "nan")
_HOME_TIMES = ("spring", "autumn", "holiday", "season")
_HOME_TEMPLATES = (
    "a quick tip about {cue} for the {time}",
    "my {person} swears by {cue}",
    "everything you need to learn about {cue}",
    "my {person} taught me {cue} one {time}",
    "{cue} made easy for beginners",
    "common mistakes with {cue}",
    "how to get {cue} right this {time}",
    "a simple guide to {cue} from my {person}",
)
_HOME_TAILS = (
    "which saves plenty of time and effort", "whatever the size of your house",
    "even on the busiest of weekdays", "without spending a fortune on it",
    "and you will never look back", "once you get the hang of it",
)
# fmt: on

# ---------------------------------------------------------------------------------------------
# Row makers. Each maker takes (rng, combo) and returns a row without the split/dedupe logic.
# A combo is a tuple (label, nuisance...) and the block of combos covers every pairing once.
# ---------------------------------------------------------------------------------------------

Row = dict[str, object]
_Maker = Callable[[random.Random, tuple[int, ...]], Row]


def _pick(rng: random.Random, seq: Sequence[Any]) -> Any:
    return seq[rng.randrange(len(seq))]


def _negation_maker(
    nouns_etc: dict[str, Sequence[str]],
    templates: Sequence[str],
    positive: Sequence[str],
    negative: Sequence[str],
) -> _Maker:
    """label = polarity(adj) XOR negated; combo = (label, negated)."""

    def make(rng: random.Random, combo: tuple[int, ...]) -> Row:
        label, negated = combo
        # label 1 = positive. Unnegated: adjective polarity = label; negated: flipped.
        adjective_positive = bool(label) != bool(negated)
        adj = _pick(rng, positive if adjective_positive else negative)
        neg = "not " if negated else ""
        template = _pick(rng, templates)
        slots = {key: _pick(rng, values) for key, values in nouns_etc.items()}
        return {"text_a": template.format(adj=adj, neg=neg, **slots), "label": label}

    return make


def _make_agree_pp(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 1 = grammatical; combo = (label, head is plural)."""
    label, plural = combo
    head = _pick(rng, _PP_HEADS)[plural]
    attractor_plural = (1 - plural) if rng.random() < _ATTRACTOR_MISMATCH else plural
    attractor = _pick(rng, _PP_ATTRACTORS)[attractor_plural]
    verb_number = plural if label else 1 - plural
    verb = _pick(rng, _PP_VERBS)[verb_number]
    prep, complement = _pick(rng, _PP_PREPS), _pick(rng, _PP_COMPLEMENTS)
    text = f"the {head} {prep} the {attractor} {verb} {complement}"
    return {"text_a": text, "label": label}


def _make_agree_rc(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 1 = grammatical; combo = (label, head is plural)."""
    label, plural = combo
    i, j = rng.sample(range(len(_RC_PEOPLE)), 2)
    head = _RC_PEOPLE[i][plural]
    inner_plural = (1 - plural) if rng.random() < _ATTRACTOR_MISMATCH else plural
    inner = _RC_PEOPLE[j][inner_plural]
    inner_verb = _pick(rng, _RC_VERBS)[inner_plural]  # the relative clause itself is always right
    verb_number = plural if label else 1 - plural
    main_verb = _pick(rng, _RC_COPULAS)[verb_number]
    words = ["the", head, "that", "the", inner, inner_verb, main_verb, _pick(rng, _RC_COMPLEMENTS)]
    return {"text_a": " ".join(words), "label": label}


def _make_match_person(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 1 = same person; combo = (label,). Negatives share a first or last name 2/3 of the
    time (1/3 each), so matching one name is not enough."""
    (label,) = combo
    first, last = _pick(rng, _FIRST_NAMES), _pick(rng, _LAST_NAMES)
    if label:
        first2, last2 = first, last
    else:
        kind = rng.randrange(3)
        other_first = _pick(rng, [f for f in _FIRST_NAMES if f != first])
        other_last = _pick(rng, [s for s in _LAST_NAMES if s != last])
        first2, last2 = {
            0: (first, other_last),
            1: (other_first, last),
            2: (other_first, other_last),
        }[kind]
    text_a = _pick(rng, _PERSON_A_TEMPLATES).format(p=f"{first} {last}")
    text_b = _pick(rng, _PERSON_B_TEMPLATES).format(p=f"{first2} {last2}")
    return {"text_a": text_a, "text_b": text_b, "label": label}


def _make_match_city(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 1 = same city; combo = (label,)."""
    (label,) = combo
    city = _pick(rng, _CITIES)
    city2 = city if label else _pick(rng, [c for c in _CITIES if c != city])
    text_a = _pick(rng, _CITY_A_TEMPLATES).format(c=city)
    text_b = _pick(rng, _CITY_B_TEMPLATES).format(c=city2)
    return {"text_a": text_a, "text_b": text_b, "label": label}


def _make_topic_news(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 0 = sports, 1 = politics; combo = (label,). One cue phrase in a neutral frame."""
    (label,) = combo
    text = _pick(rng, _NEWS_TEMPLATES).format(
        cue=_pick(rng, _NEWS_POLITICS if label else _NEWS_SPORTS),
        source=_pick(rng, _NEWS_SOURCES),
        slot=_pick(rng, _NEWS_SLOTS),
    )
    return {"text_a": f"{text} {_pick(rng, _NEWS_TAILS)}", "label": label}


def _make_topic_home(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 0 = gardening, 1 = cooking; combo = (label,). One cue phrase in a neutral frame."""
    (label,) = combo
    text = _pick(rng, _HOME_TEMPLATES).format(
        cue=_pick(rng, _HOME_COOKING if label else _HOME_GARDEN),
        person=_pick(rng, _HOME_PEOPLE),
        time=_pick(rng, _HOME_TIMES),
    )
    return {"text_a": f"{text} {_pick(rng, _HOME_TAILS)}", "label": label}


@dataclass(frozen=True)
class _TaskSpec:
    info: DemoTaskInfo
    # One block of combos; within it labels alternate 0, 1, 0, 1, ... (see _combo_block).
    combos: tuple[tuple[int, ...], ...]
    make: _Maker


_SINGLE = ("text_a",)
_PAIR = ("text_a", "text_b")
_LABEL_ONLY = ((0,), (1,))
# (label, nuisance) with labels alternating, so any prefix of a block is balanced to within 1.
_LABEL_BY_BINARY = ((0, 0), (1, 0), (0, 1), (1, 1))

_SPECS: dict[str, _TaskSpec] = {
    spec.info.name: spec
    for spec in (
        _TaskSpec(
            DemoTaskInfo(
                "neg_movie",
                "negation",
                "Film reviews: is the verdict positive? Adjective polarity flipped by "
                "'not' (half the rows negated).",
                _SINGLE,
                ("negative", "positive"),
            ),
            _LABEL_BY_BINARY,
            _negation_maker(
                {
                    "noun": _MOVIE_NOUNS,
                    "genre": _MOVIE_GENRES,
                },
                _MOVIE_TEMPLATES,
                _MOVIE_POS,
                _MOVIE_NEG,
            ),
        ),
        _TaskSpec(
            DemoTaskInfo(
                "neg_product",
                "negation",
                "Product reviews: is the verdict positive? Adjective polarity flipped by "
                "'not' (half the rows negated).",
                _SINGLE,
                ("negative", "positive"),
            ),
            _LABEL_BY_BINARY,
            _negation_maker(
                {"noun": _PRODUCT_NOUNS, "color": _PRODUCT_COLORS},
                _PRODUCT_TEMPLATES,
                _PRODUCT_POS,
                _PRODUCT_NEG,
            ),
        ),
        _TaskSpec(
            DemoTaskInfo(
                "agree_pp",
                "agreement",
                "Subject-verb agreement across a prepositional-phrase attractor "
                "('the keys to the cabinet are rusty'): grammatical or not.",
                _SINGLE,
                ("ungrammatical", "grammatical"),
            ),
            _LABEL_BY_BINARY,
            _make_agree_pp,
        ),
        _TaskSpec(
            DemoTaskInfo(
                "agree_rc",
                "agreement",
                "Subject-verb agreement across a relative clause "
                "('the author that the guards admire is calm'): grammatical or not.",
                _SINGLE,
                ("ungrammatical", "grammatical"),
            ),
            _LABEL_BY_BINARY,
            _make_agree_rc,
        ),
        _TaskSpec(
            DemoTaskInfo(
                "match_person",
                "pair_match",
                "Sentence pair: do both sentences mention the same person (full name)?",
                _PAIR,
                ("different", "same"),
            ),
            _LABEL_ONLY,
            _make_match_person,
        ),
        _TaskSpec(
            DemoTaskInfo(
                "match_city",
                "pair_match",
                "Sentence pair: do both sentences mention the same city?",
                _PAIR,
                ("different", "same"),
            ),
            _LABEL_ONLY,
            _make_match_city,
        ),
        _TaskSpec(
            DemoTaskInfo(
                "topic_news",
                "topic",
                "Headline topic: sports or politics.",
                _SINGLE,
                ("sports", "politics"),
            ),
            _LABEL_ONLY,
            _make_topic_news,
        ),
        _TaskSpec(
            DemoTaskInfo(
                "topic_home",
                "topic",
                "Household tip topic: gardening or cooking.",
                _SINGLE,
                ("gardening", "cooking"),
            ),
            _LABEL_ONLY,
            _make_topic_home,
        ),
    )
}

DEMO_TASKS: tuple[str, ...] = tuple(_SPECS)
TASK_INFO: dict[str, DemoTaskInfo] = {name: spec.info for name, spec in _SPECS.items()}
FAMILIES: dict[str, tuple[str, str]] = {
    "negation": ("neg_movie", "neg_product"),
    "agreement": ("agree_pp", "agree_rc"),
    "pair_match": ("match_person", "match_city"),
    "topic": ("topic_news", "topic_home"),
}
SIBLINGS: dict[str, str] = {}
for _a, _b in FAMILIES.values():
    SIBLINGS[_a], SIBLINGS[_b] = _b, _a
del _a, _b


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _row_key(row: Row, fields: tuple[str, ...]) -> str:
    return "\x1f".join(str(row[f]) for f in fields)


def _split_of(task: str, key: str) -> str:
    bucket = _stable_int(f"{task}\x1e{key}") % _N_BUCKETS
    for split, buckets in _SPLIT_BUCKETS.items():
        if bucket in buckets:
            return split
    raise AssertionError("unreachable: every bucket belongs to a split")


def generate(task: str, split: str, n: int | None = None, seed: int = 0) -> list[dict]:
    """Generate ``n`` rows (default ``DEFAULT_SIZES[split]``) of a demo task's split.

    Rows are ``{"text_a": str, "label": int}`` plus ``"text_b"`` for pair tasks. Deterministic
    in ``(task, split, n, seed, GENERATOR_VERSION)``; a shorter ``n`` gives a prefix of a longer
    one. Raises ``KeyError`` for an unknown task or split, ``ValueError`` for a negative ``n`` or
    one larger than the split's share of the task's text space allows.
    """
    if task not in _SPECS:
        raise KeyError(f"unknown demo task {task!r}; known: {', '.join(DEMO_TASKS)}")
    if split not in _SPLIT_BUCKETS:
        raise KeyError(f"unknown split {split!r}; known: {', '.join(_SPLIT_BUCKETS)}")
    if n is None:
        n = DEFAULT_SIZES[split]
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    spec = _SPECS[task]
    fields = spec.info.text_fields
    rng = random.Random(_stable_int(f"{task}|{split}|{seed}|v{GENERATOR_VERSION}"))

    rows: list[dict] = []
    seen: set[str] = set()
    block: list[tuple[int, ...]] = []
    while len(rows) < n:
        if not block:
            # Shuffle label-balanced pairs of combos, keeping labels alternating within the
            # block: shuffle the nuisance values, then the order of (0, 1) within each pair.
            block = _combo_block(rng, spec.combos)
        combo = block.pop(0)
        for _ in range(_MAX_TRIES_PER_ROW):
            row = spec.make(rng, combo)
            key = _row_key(row, fields)
            if key not in seen and _split_of(task, key) == split:
                seen.add(key)
                rows.append(row)
                break
        else:
            raise ValueError(
                f"cannot draw {n} distinct rows for demo task {task!r} split {split!r}: the "
                f"text space ran out after {len(rows)}; ask for fewer rows"
            )
    return rows


def _combo_block(rng: random.Random, combos: tuple[tuple[int, ...], ...]) -> list[tuple[int, ...]]:
    """One block covering every combo once; labels of consecutive pairs are {0, 1}, so any
    prefix of the concatenated blocks has label counts differing by at most one."""
    by_label: dict[int, list[tuple[int, ...]]] = {}
    for combo in combos:
        by_label.setdefault(combo[0], []).append(combo)
    zeros, ones = list(by_label[0]), list(by_label[1])
    rng.shuffle(zeros)
    rng.shuffle(ones)
    block: list[tuple[int, ...]] = []
    for zero, one in zip(zeros, ones, strict=True):
        block.extend((zero, one) if rng.random() < 0.5 else (one, zero))
    return block


def vocabulary(sizes: Mapping[str, int] | None = None, seed: int = 0) -> list[str]:
    """The sorted words of the rows :func:`generate` gives every task for ``sizes`` (split ->
    number of rows; default 60 training rows): the vocabulary of a tiny test tokenizer that
    reads the demo texts without unknown words (``models.make_tiny_model(words=...)``)."""
    words: set[str] = set()
    for task in DEMO_TASKS:
        for split, n in (sizes or {"train": 60}).items():
            for row in generate(task, split, n, seed):
                words.update(row["text_a"].split())
                words.update(row.get("text_b", "").split())
    return sorted(words)
