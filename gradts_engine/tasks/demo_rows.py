"""The demo suite's words, templates and row makers (see :mod:`.demo` for the design).

Each vocabulary list is used by exactly one task; siblings never share a content word. A row
maker takes ``(rng, combo)``, where a combo is ``(label, nuisance...)``, and returns one row
(``text_a``, ``text_b`` for pair tasks, ``label``); :mod:`.demo` adds the split assignment and
the de-duplication. Changing anything here changes the generated rows: bump
``demo.GENERATOR_VERSION``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

ATTRACTOR_MISMATCH = 0.5  # agreement: how often the attractor's number differs from the head's


# ---------------------------------------------------------------------------------------------
# Vocabularies. Each list is used by exactly one task; siblings never share a content word.
# ---------------------------------------------------------------------------------------------
# fmt: off

# -- neg_movie: film reviews, past tense ------------------------------------------------------
MOVIE_NOUNS = (
    "film", "movie", "plot", "acting", "script", "soundtrack", "cast", "ending", "sequel",
    "screenplay", "cinematography", "dialogue", "storyline", "pacing", "direction", "editing",
    "finale", "premise", "remake", "casting",
)
MOVIE_GENRES = (
    "comedy", "drama", "western", "musical", "documentary", "cartoon", "biopic", "romance",
    "blockbuster", "mystery", "satire", "melodrama",
)
MOVIE_POS = (
    "great", "brilliant", "wonderful", "superb", "excellent", "enjoyable", "fun", "amazing",
)
MOVIE_NEG = (
    "awful", "dreadful", "boring", "dull", "bad", "horrible", "lame", "weak",
)
MOVIE_TEMPLATES = (
    "the {noun} was {neg}{adj}",
    "i thought the {noun} was {neg}{adj}",
    "the {noun} of this {genre} was {neg}{adj}",
    "that {genre} was {neg}{adj}",
)

# -- neg_product: shopping reviews, present tense / present perfect ---------------------------
PRODUCT_NOUNS = (
    "blender", "toaster", "vacuum", "kettle", "charger", "backpack", "laptop", "headset",
    "mattress", "stroller", "printer", "router", "speaker", "umbrella", "thermos", "keyboard",
    "suitcase", "hairdryer", "drill", "monitor", "webcam", "treadmill", "earbuds", "tablet",
)
PRODUCT_COLORS = ("black", "silver", "white", "grey", "navy", "beige", "purple", "orange")
PRODUCT_POS = (
    "good", "nice", "perfect", "solid", "reliable", "sturdy", "handy", "fantastic",
)
PRODUCT_NEG = (
    "useless", "rubbish", "faulty", "flimsy", "defective", "shoddy", "noisy", "lousy",
)
PRODUCT_TEMPLATES = (
    "this {noun} is {neg}{adj}",
    "my {noun} is {neg}{adj}",
    "the {color} {noun} is {neg}{adj}",
    "my {color} {noun} is {neg}{adj}",
)

# -- agree_pp: household objects, copular verbs, prepositional-phrase attractor ---------------
PP_HEADS = (
    ("key", "keys"), ("lamp", "lamps"), ("box", "boxes"), ("bottle", "bottles"),
    ("drawer", "drawers"), ("jar", "jars"), ("ladder", "ladders"), ("mirror", "mirrors"),
    ("candle", "candles"), ("basket", "baskets"), ("hinge", "hinges"), ("bucket", "buckets"),
    ("shelf", "shelves"), ("brush", "brushes"), ("blanket", "blankets"), ("pillow", "pillows"),
    ("hook", "hooks"), ("lid", "lids"), ("tile", "tiles"), ("handle", "handles"),
    ("rope", "ropes"), ("crate", "crates"),
)
PP_ATTRACTORS = (
    ("cabinet", "cabinets"), ("cupboard", "cupboards"), ("closet", "closets"),
    ("garage", "garages"), ("attic", "attics"), ("cellar", "cellars"),
    ("staircase", "staircases"), ("fireplace", "fireplaces"), ("porch", "porches"),
    ("wardrobe", "wardrobes"), ("chest", "chests"), ("barn", "barns"),
    ("workbench", "workbenches"), ("hallway", "hallways"), ("doorway", "doorways"),
    ("chimney", "chimneys"),
)
PP_PREPS = ("to", "of", "near", "behind", "beside", "under", "above", "in", "on", "inside")
PP_VERBS = (("is", "are"), ("was", "were"))
PP_COMPLEMENTS = (
    "rusty", "dusty", "cracked", "missing", "crooked", "sticky", "damp", "loose", "heavy",
    "empty", "shiny", "chipped", "tarnished", "warped", "faded", "spotless", "tangled",
    "dented",
)

# -- agree_rc: people, transitive verb in a relative clause, intransitive main verb -----------
RC_PEOPLE = (
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
RC_VERBS = (
    ("likes", "like"), ("admires", "admire"), ("hates", "hate"), ("knows", "know"),
    ("follows", "follow"), ("praises", "praise"), ("trusts", "trust"), ("mocks", "mock"),
    ("envies", "envy"), ("thanks", "thank"), ("blames", "blame"), ("ignores", "ignore"),
    ("fears", "fear"), ("adores", "adore"), ("distrusts", "distrust"),
)
RC_COPULAS = (("is", "are"), ("was", "were"))
RC_COMPLEMENTS = (
    "happy", "tired", "angry", "busy", "calm", "shy", "nervous", "proud", "honest",
    "sleepy", "grumpy", "cheerful", "hungry", "lonely", "polite", "rich",
)

# -- match_person: full names in everyday anecdotes --------------------------------------------
FIRST_NAMES = (
    "maria", "james", "aisha", "kenji", "olga", "pedro", "fatima", "liam", "sofia", "noah",
    "priya", "omar", "elena", "viktor", "chloe", "samuel", "ingrid", "tariq", "hana", "lucas",
    "zara", "mateo", "nadia", "felix", "amara", "hugo", "leila", "oscar", "yuki", "ruben",
)
LAST_NAMES = (
    "lopez", "carter", "khan", "tanaka", "petrova", "silva", "haddad", "murphy", "rossi",
    "becker", "sharma", "nasser", "novak", "ivanov", "dubois", "okafor", "larsen", "malik",
    "kim", "costa", "fischer", "mendez", "hughes", "adeyemi", "moreau", "santos", "weber",
    "nakamura", "quinn", "varga",
)
PERSON_A_TEMPLATES = (
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
PERSON_B_TEMPLATES = (
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
CITIES = (
    "paris", "tokyo", "lima", "cairo", "oslo", "madrid", "berlin", "rome", "dublin", "lisbon",
    "vienna", "prague", "athens", "warsaw", "nairobi", "delhi", "seoul", "bangkok", "sydney",
    "toronto", "chicago", "boston", "denver", "havana", "istanbul", "helsinki", "stockholm",
    "budapest", "brussels", "amsterdam", "geneva", "manila", "jakarta", "santiago", "bogota",
    "montreal", "melbourne", "auckland", "marrakesh", "copenhagen",
)
CITY_A_TEMPLATES = (
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
CITY_B_TEMPLATES = (
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
NEWS_SPORTS = (
    "the derby", "the cup final", "the transfer window", "the striker", "the goalkeeper",
    "the playoffs", "the penalty shootout", "the league table", "the quarterback",
    "the home opener", "the relay team", "the head coach", "the championship", "the semifinal",
    "the tournament", "the pitcher",
)
NEWS_POLITICS = (
    "the senate", "the budget vote", "the election", "the referendum", "the tax bill",
    "the prime minister", "the coalition", "the ballot count", "the governor", "the parliament",
    "the ministers", "the opposition leader", "the pension reform", "the tariff dispute",
    "the campaign trail", "the chancellor",
)
NEWS_SOURCES = ("pundits", "insiders", "analysts", "critics", "columnists", "commentators")
NEWS_SLOTS = ("morning", "evening", "weekend", "midday")
# Neutral frames: the topic is carried by the one cue phrase alone.
NEWS_TEMPLATES = (
    "{source} say {cue} dominated the {slot} headlines",
    "a fresh row over {cue} erupted this {slot}",
    "{source} weigh in on {cue}",
    "{cue} tops the {slot} bulletin",
    "new poll puts {cue} in the spotlight",
    "{source} slam coverage of {cue}",
    "live updates on {cue} from {source}",
    "what {source} got wrong on {cue}",
)
NEWS_TAILS = (
    "as the week drew to a close", "according to an early report",
    "in a piece published online", "after a long and eventful week",
    "with more details expected later", "in a story that is still developing",
)

# -- topic_home: gardening vs cooking tips ----------------------------------------------------
HOME_GARDEN = (
    "pruning roses", "planting tulips", "mulching borders", "repotting ferns", "composting",
    "weeding", "sowing seeds", "watering hydrangeas", "dividing hostas", "deadheading",
    "trimming hedges", "raking leaves", "mowing lawns", "potting seedlings", "staking dahlias",
    "grafting shrubs",
)
HOME_COOKING = (
    "searing steak", "braising lamb", "roasting chicken", "toasting spices", "making risotto",
    "simmering stock", "baking bread", "whisking eggs", "frying tofu", "poaching salmon",
    "kneading dough", "grilling shrimp", "marinating pork", "seasoning soup",
    "caramelizing onions", "blanching beans",
)
HOME_PEOPLE = ("neighbour", "aunt", "grandad", "mentor", "flatmate", "nan")
HOME_TIMES = ("spring", "autumn", "holiday", "season")
HOME_TEMPLATES = (
    "a quick tip about {cue} for the {time}",
    "my {person} swears by {cue}",
    "everything you need to learn about {cue}",
    "my {person} taught me {cue} one {time}",
    "{cue} made easy for beginners",
    "common mistakes with {cue}",
    "how to get {cue} right this {time}",
    "a simple guide to {cue} from my {person}",
)
HOME_TAILS = (
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
Maker = Callable[[random.Random, tuple[int, ...]], Row]


def pick(rng: random.Random, seq: Sequence[Any]) -> Any:
    return seq[rng.randrange(len(seq))]


def negation_maker(
    nouns_etc: dict[str, Sequence[str]],
    templates: Sequence[str],
    positive: Sequence[str],
    negative: Sequence[str],
) -> Maker:
    """label = polarity(adj) XOR negated; combo = (label, negated)."""

    def make(rng: random.Random, combo: tuple[int, ...]) -> Row:
        label, negated = combo
        # label 1 = positive. Unnegated: adjective polarity = label; negated: flipped.
        adjective_positive = bool(label) != bool(negated)
        adj = pick(rng, positive if adjective_positive else negative)
        neg = "not " if negated else ""
        template = pick(rng, templates)
        slots = {key: pick(rng, values) for key, values in nouns_etc.items()}
        return {"text_a": template.format(adj=adj, neg=neg, **slots), "label": label}

    return make


def make_agree_pp(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 1 = grammatical; combo = (label, head is plural)."""
    label, plural = combo
    head = pick(rng, PP_HEADS)[plural]
    attractor_plural = (1 - plural) if rng.random() < ATTRACTOR_MISMATCH else plural
    attractor = pick(rng, PP_ATTRACTORS)[attractor_plural]
    verb_number = plural if label else 1 - plural
    verb = pick(rng, PP_VERBS)[verb_number]
    prep, complement = pick(rng, PP_PREPS), pick(rng, PP_COMPLEMENTS)
    text = f"the {head} {prep} the {attractor} {verb} {complement}"
    return {"text_a": text, "label": label}


def make_agree_rc(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 1 = grammatical; combo = (label, head is plural)."""
    label, plural = combo
    i, j = rng.sample(range(len(RC_PEOPLE)), 2)
    head = RC_PEOPLE[i][plural]
    inner_plural = (1 - plural) if rng.random() < ATTRACTOR_MISMATCH else plural
    inner = RC_PEOPLE[j][inner_plural]
    inner_verb = pick(rng, RC_VERBS)[inner_plural]  # the relative clause itself is always right
    verb_number = plural if label else 1 - plural
    main_verb = pick(rng, RC_COPULAS)[verb_number]
    words = ["the", head, "that", "the", inner, inner_verb, main_verb, pick(rng, RC_COMPLEMENTS)]
    return {"text_a": " ".join(words), "label": label}


def make_match_person(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 1 = same person; combo = (label,). Negatives share a first or last name 2/3 of the
    time (1/3 each), so matching one name is not enough."""
    (label,) = combo
    first, last = pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES)
    if label:
        first2, last2 = first, last
    else:
        kind = rng.randrange(3)
        other_first = pick(rng, [f for f in FIRST_NAMES if f != first])
        other_last = pick(rng, [s for s in LAST_NAMES if s != last])
        first2, last2 = {
            0: (first, other_last),
            1: (other_first, last),
            2: (other_first, other_last),
        }[kind]
    text_a = pick(rng, PERSON_A_TEMPLATES).format(p=f"{first} {last}")
    text_b = pick(rng, PERSON_B_TEMPLATES).format(p=f"{first2} {last2}")
    return {"text_a": text_a, "text_b": text_b, "label": label}


def make_match_city(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 1 = same city; combo = (label,)."""
    (label,) = combo
    city = pick(rng, CITIES)
    city2 = city if label else pick(rng, [c for c in CITIES if c != city])
    text_a = pick(rng, CITY_A_TEMPLATES).format(c=city)
    text_b = pick(rng, CITY_B_TEMPLATES).format(c=city2)
    return {"text_a": text_a, "text_b": text_b, "label": label}


def make_topic_news(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 0 = sports, 1 = politics; combo = (label,). One cue phrase in a neutral frame."""
    (label,) = combo
    text = pick(rng, NEWS_TEMPLATES).format(
        cue=pick(rng, NEWS_POLITICS if label else NEWS_SPORTS),
        source=pick(rng, NEWS_SOURCES),
        slot=pick(rng, NEWS_SLOTS),
    )
    return {"text_a": f"{text} {pick(rng, NEWS_TAILS)}", "label": label}


def make_topic_home(rng: random.Random, combo: tuple[int, ...]) -> Row:
    """label 0 = gardening, 1 = cooking; combo = (label,). One cue phrase in a neutral frame."""
    (label,) = combo
    text = pick(rng, HOME_TEMPLATES).format(
        cue=pick(rng, HOME_COOKING if label else HOME_GARDEN),
        person=pick(rng, HOME_PEOPLE),
        time=pick(rng, HOME_TIMES),
    )
    return {"text_a": f"{text} {pick(rng, HOME_TAILS)}", "label": label}


