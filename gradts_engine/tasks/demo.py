"""The built-in demo suite: synthetic sibling tasks with a planted answer (DESIGN.md §7).

GradTS ranks candidate auxiliary tasks for a primary task by how well their attention-head
importance matrices agree (Kendall tau-b). To show that the ranking means something, the demo
suite is built so that the right answer is known in advance: it consists of **families of two
sibling tasks** that need the same linguistic skill but share no content vocabulary and no
sentence template. For every task, its sibling should be the top-ranked candidate.

The four families (the suite measured in DESIGN.md §7 to work with a pretrained MiniLM:
sibling top-ranked in 31 of 32 task-seed cases at 600 training examples, 1 epoch, lr 1e-4,
the ``during`` estimator):

* ``negation`` -- the label is the polarity of an adjective, flipped by "not" / "never".
  ``neg_movie`` uses film-review vocabulary and past-tense templates; ``neg_product`` uses
  shopping vocabulary and present-tense templates. Half of the rows are negated and the
  adjective's own polarity is balanced against the label, so the bare adjective predicts
  nothing: the negation has to be read.
* ``agreement`` -- is the main verb's number right? ``agree_pp`` puts a prepositional-phrase
  attractor between subject and verb ("the keys to the cabinet are/is rusty"); ``agree_rc``
  puts a relative clause there ("the author that the guards admire laughs/laugh"). The
  attractor's number usually (3 times in 4) differs from the subject's, so "agree with the
  nearest noun" is wrong most of the time.
* ``pair_match`` -- sentence pairs (``text_a``, ``text_b``): do both sentences mention the
  same person (``match_person``: full names; half of the negatives share the first or last
  name) / the same city (``match_city``)?
* ``topic`` -- sports vs politics headlines (``topic_news``); gardening vs cooking tips
  (``topic_home``).

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
from collections.abc import Callable, Sequence
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
]

DEMO_SUITE: str = "demo"
GENERATOR_VERSION: int = 1  # bump whenever the generated rows change: it is part of cache keys
DEFAULT_SIZES: dict[str, int] = {"train": 600, "dev": 200, "test": 200}

# Every candidate text belongs to exactly one split: bucket = sha256(task, text) mod 5.
_SPLIT_BUCKETS: dict[str, frozenset[int]] = {
    "train": frozenset({0, 1, 2}),
    "dev": frozenset({3}),
    "test": frozenset({4}),
}
_N_BUCKETS = 5
_MAX_TRIES_PER_ROW = 20_000


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
_MOVIE_MOMENTS = (
    "opening scene", "second act", "twist", "closing credits", "midpoint", "climax",
    "intermission", "epilogue",
)
_MOVIE_VOICES = (
    "critics agreed", "audiences felt", "the reviewer noted", "my date said",
    "the whole cinema agreed", "the festival jury decided", "film buffs insisted",
)
_MOVIE_POS = (
    "brilliant", "gripping", "moving", "hilarious", "superb", "captivating", "stunning", "witty",
    "masterful", "thrilling", "charming", "riveting", "inventive", "heartfelt", "dazzling",
    "poignant", "clever", "memorable",
)
_MOVIE_NEG = (
    "dull", "boring", "clumsy", "tedious", "predictable", "lifeless", "bland", "forgettable",
    "pretentious", "sluggish", "incoherent", "wooden", "shallow", "overlong", "corny",
    "muddled", "derivative", "amateurish",
)
_MOVIE_TEMPLATES = (
    "the {noun} was {neg}{adj}",
    "i thought the {noun} was {neg}{adj}",
    "the {noun} of this {genre} was {neg}{adj}",
    "{voice} the {noun} was {neg}{adj}",
    "by the {moment} the {noun} was {neg}{adj}",
    "that {genre} had a {noun} that was {neg}{adj}",
    "{voice} the {genre} was {neg}{adj}",
)

# -- neg_product: shopping reviews, present tense / present perfect ---------------------------
_PRODUCT_NOUNS = (
    "blender", "toaster", "vacuum", "kettle", "charger", "backpack", "laptop", "headset",
    "mattress", "stroller", "printer", "router", "speaker", "umbrella", "thermos", "keyboard",
    "suitcase", "hairdryer", "drill", "monitor", "webcam", "treadmill", "earbuds", "tablet",
)
_PRODUCT_COLORS = ("black", "silver", "white", "grey", "navy", "beige", "purple", "orange")
_PRODUCT_PERIODS = ("week", "month", "fortnight", "year")
_PRODUCT_POS = (
    "sturdy", "reliable", "durable", "comfortable", "efficient", "handy", "lightweight",
    "affordable", "quiet", "sleek", "ergonomic", "solid", "dependable", "convenient",
    "responsive", "compact",
)
_PRODUCT_NEG = (
    "flimsy", "faulty", "noisy", "overpriced", "bulky", "leaky", "fragile", "defective",
    "wobbly", "unreliable", "glitchy", "clunky", "uncomfortable", "useless", "shoddy", "laggy",
)
_PRODUCT_TEMPLATES = (
    "this {noun} is {neg}{adj}",
    "the {noun} i ordered is {neg}{adj}",
    "my {noun} has {neg}been {adj}",
    "after a {period} the {noun} is {neg}{adj}",
    "for the price the {noun} is {neg}{adj}",
    "the {color} {noun} is {neg}{adj}",
    "my {color} {noun} has {neg}been {adj}",
    "this {color} {noun} is {neg}{adj} after a {period}",
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
_PP_VERBS = (
    ("is", "are"), ("was", "were"), ("has been", "have been"), ("seems", "seem"),
    ("looks", "look"), ("remains", "remain"), ("appears", "appear"),
)
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
_RC_MAIN_VERBS = (
    ("laughs", "laugh"), ("sings", "sing"), ("smiles", "smile"), ("sleeps", "sleep"),
    ("dances", "dance"), ("complains", "complain"), ("waits", "wait"), ("sighs", "sigh"),
    ("frowns", "frown"), ("shrugs", "shrug"), ("nods", "nod"), ("waves", "wave"),
    ("yawns", "yawn"), ("whistles", "whistle"), ("blushes", "blush"),
    ("hesitates", "hesitate"), ("panics", "panic"), ("wanders", "wander"),
    ("grumbles", "grumble"), ("apologizes", "apologize"),
)
_RC_ADVERBS = (
    "", "", "", "loudly", "often", "quietly", "again", "sometimes", "rarely", "nervously",
    "politely",
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
_TEAMS = (
    "the tigers", "the falcons", "the rangers", "the sharks", "the bulls", "the eagles",
    "the hornets", "the wolves", "the pirates", "the titans", "the comets", "the raptors",
    "the vikings", "the panthers", "the stallions", "the jaguars",
)
_SPORT_POSITIONS = (
    "striker", "goalkeeper", "quarterback", "pitcher", "midfielder", "defender", "winger",
    "shortstop", "linebacker", "forward",
)
_SPORT_EVENTS = (
    "final", "playoffs", "derby", "semifinal", "tournament", "championship", "home opener",
    "cup tie",
)
_SPORT_PLAYS = ("goal", "touchdown", "homer", "penalty", "free kick", "buzzer beater")
_SPORT_SETBACKS = ("losing streak", "cup exit", "derby defeat", "humiliating loss", "poor run")
_SPORT_TEMPLATES = (
    "{team} beat {team2} in the {event}",
    "{team} sign star {position} on record deal",
    "{team} coach sacked after {setback}",
    "injury rules {position} out of {event}",
    "{team} clinch {event} with dramatic {play}",
    "fans celebrate as {team} win the {event}",
    "{team} stun {team2} with stoppage time {play}",
    "veteran {position} retires after {event} loss",
)
_POL_OFFICIALS = (
    "senator", "governor", "mayor", "prime minister", "president", "chancellor",
    "finance minister", "opposition leader", "attorney general", "health secretary",
)
_POL_CHAMBERS = ("senate", "parliament", "congress", "assembly", "state legislature")
_POL_POLICIES = (
    "tax", "healthcare", "immigration", "pension", "housing", "education", "defense",
    "climate", "tariff", "welfare", "energy", "voting rights",
)
_POL_ADJECTIVES = ("sweeping", "modest", "controversial", "bipartisan", "radical", "overdue")
_POL_PARTIES = ("labour", "conservatives", "liberals", "democrats", "republicans", "socialists")
_POL_REGIONS = ("northern", "southern", "coastal", "rural", "suburban")
_POL_SCANDALS = ("bribery", "corruption", "leak", "fraud", "lobbying")
_POL_TEMPLATES = (
    "{official} unveils {adj} {policy} reform plan",
    "{chamber} passes {adj} {policy} bill",
    "{party} win crucial {region} district seat",
    "{official} resigns amid {scandal} probe",
    "voters reject {adj} {policy} referendum",
    "{official} vows to cut {policy} spending",
    "{party} demand inquiry into {official} {scandal} claims",
    "{chamber} debates {adj} {policy} overhaul",
    "{official} defends {policy} record at {region} town hall",
)

# -- topic_home: gardening vs cooking tips ----------------------------------------------------
_PLANTS = (
    "roses", "tulips", "hydrangeas", "ferns", "lavender", "hostas", "daffodils", "peonies",
    "lilies", "shrubs", "hedges", "seedlings", "dahlias", "marigolds", "begonias", "geraniums",
    "camellias", "azaleas", "irises", "foxgloves",
)
_GARDEN_PROBLEMS = ("mildew", "aphids", "root rot", "blight", "slugs", "wilting", "weeds")
_GARDEN_SEASONS = ("winter", "autumn", "spring", "summer")
_GARDEN_TIMINGS = ("early", "late")
_GARDEN_SOILS = ("sandy", "clay", "loamy", "acidic", "chalky")
_GARDEN_MULCHES = ("bark chips", "straw", "leaf mould", "pine needles")
_GARDEN_AMENDMENTS = ("compost", "manure", "grit", "leaf mould")
_GARDEN_LIGHTS = ("sunny", "shady", "sheltered")
_GARDEN_EXPOSURES = ("full sun", "partial shade", "dappled shade")
_GARDEN_STRUCTURES = ("fence", "trellis", "greenhouse", "pond", "hedge")
_GARDEN_COVERS = ("fleece", "cloches", "netting", "burlap")
_GARDEN_TEMPLATES = (
    "water your {plant} at dawn to prevent {problem}",
    "prune {plant} in {timing} {season}",
    "mulch around {plant} with {mulch} to keep {soil} soil moist",
    "plant {plant} in a {light} bed beside the {structure}",
    "dig {amendment} into {soil} soil before planting {plant}",
    "{plant} thrive in {soil} soil and {exposure}",
    "check your {plant} for {problem} every {season}",
    "cover young {plant} with {cover} in {season}",
)
_MEATS = (
    "chicken", "steak", "pork chops", "salmon", "lamb", "tofu", "duck", "shrimp", "sausages",
    "scallops", "brisket", "cod",
)
_SPICES = (
    "cumin", "paprika", "nutmeg", "cinnamon", "oregano", "chili flakes", "turmeric", "saffron",
    "cardamom", "coriander", "fennel seeds", "sumac",
)
_DISHES = (
    "soup", "stew", "risotto", "curry", "sauce", "omelette", "pasta", "casserole", "chowder",
    "gravy", "broth", "frittata",
)
_AROMATICS = ("garlic", "ginger", "lemon zest", "shallots", "scallions", "thyme")
_PANS = ("skillet", "wok", "saucepan", "griddle")
_FATS = ("olive oil", "butter", "ghee", "duck fat")
_MINUTES = ("five", "ten", "fifteen", "twenty")
_COOK_TEMPLATES = (
    "sear the {meat} in {fat} before roasting it",
    "add a pinch of {spice} to the {dish}",
    "rest the {meat} for {minutes} minutes before slicing",
    "marinate the {meat} overnight with {spice} and {aromatic}",
    "toast the {spice} in a dry {pan} until fragrant",
    "season the {dish} with {spice} and {aromatic} before serving",
    "simmer the {dish} gently with {aromatic}",
    "pat the {meat} dry so it browns in the {pan}",
    "stir {aromatic} into the {dish} at the end",
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
        neg = _pick(rng, ("not ", "never ")) if negated else ""
        template = _pick(rng, templates)
        slots = {key: _pick(rng, values) for key, values in nouns_etc.items()}
        return {"text_a": template.format(adj=adj, neg=neg, **slots), "label": label}

    return make


def _make_agree_pp(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 1 = grammatical; combo = (label, head is plural)."""
    label, plural = combo
    head = _pick(rng, _PP_HEADS)[plural]
    attractor_plural = (1 - plural) if rng.random() < 0.75 else plural
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
    inner_plural = (1 - plural) if rng.random() < 0.75 else plural
    inner = _RC_PEOPLE[j][inner_plural]
    inner_verb = _pick(rng, _RC_VERBS)[inner_plural]  # the relative clause itself is always right
    verb_number = plural if label else 1 - plural
    main_verb = _pick(rng, _RC_MAIN_VERBS)[verb_number]
    words = ["the", head, "that", "the", inner, inner_verb, main_verb, _pick(rng, _RC_ADVERBS)]
    return {"text_a": " ".join(w for w in words if w), "label": label}


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
    """label 0 = sports, 1 = politics; combo = (label,)."""
    (label,) = combo
    if label == 0:
        team, team2 = rng.sample(_TEAMS, 2)
        text = _pick(rng, _SPORT_TEMPLATES).format(
            team=team,
            team2=team2,
            position=_pick(rng, _SPORT_POSITIONS),
            event=_pick(rng, _SPORT_EVENTS),
            play=_pick(rng, _SPORT_PLAYS),
            setback=_pick(rng, _SPORT_SETBACKS),
        )
    else:
        text = _pick(rng, _POL_TEMPLATES).format(
            official=_pick(rng, _POL_OFFICIALS),
            chamber=_pick(rng, _POL_CHAMBERS),
            policy=_pick(rng, _POL_POLICIES),
            adj=_pick(rng, _POL_ADJECTIVES),
            party=_pick(rng, _POL_PARTIES),
            region=_pick(rng, _POL_REGIONS),
            scandal=_pick(rng, _POL_SCANDALS),
        )
    return {"text_a": text, "label": label}


def _make_topic_home(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 0 = gardening, 1 = cooking; combo = (label,)."""
    (label,) = combo
    if label == 0:
        text = _pick(rng, _GARDEN_TEMPLATES).format(
            plant=_pick(rng, _PLANTS),
            problem=_pick(rng, _GARDEN_PROBLEMS),
            season=_pick(rng, _GARDEN_SEASONS),
            timing=_pick(rng, _GARDEN_TIMINGS),
            soil=_pick(rng, _GARDEN_SOILS),
            mulch=_pick(rng, _GARDEN_MULCHES),
            amendment=_pick(rng, _GARDEN_AMENDMENTS),
            light=_pick(rng, _GARDEN_LIGHTS),
            exposure=_pick(rng, _GARDEN_EXPOSURES),
            structure=_pick(rng, _GARDEN_STRUCTURES),
            cover=_pick(rng, _GARDEN_COVERS),
        )
    else:
        text = _pick(rng, _COOK_TEMPLATES).format(
            meat=_pick(rng, _MEATS),
            spice=_pick(rng, _SPICES),
            dish=_pick(rng, _DISHES),
            aromatic=_pick(rng, _AROMATICS),
            pan=_pick(rng, _PANS),
            fat=_pick(rng, _FATS),
            minutes=_pick(rng, _MINUTES),
        )
    return {"text_a": text, "label": label}


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
                "'not'/'never' (half the rows negated).",
                _SINGLE,
                ("negative", "positive"),
            ),
            _LABEL_BY_BINARY,
            _negation_maker(
                {
                    "noun": _MOVIE_NOUNS,
                    "genre": _MOVIE_GENRES,
                    "moment": _MOVIE_MOMENTS,
                    "voice": _MOVIE_VOICES,
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
                "'not'/'never' (half the rows negated).",
                _SINGLE,
                ("negative", "positive"),
            ),
            _LABEL_BY_BINARY,
            _negation_maker(
                {"noun": _PRODUCT_NOUNS, "color": _PRODUCT_COLORS, "period": _PRODUCT_PERIODS},
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
                "('the author that the guards admire laughs'): grammatical or not.",
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
