"""Word pools shared by the task generators and the embedded world's tokenizer.

Every word here is one token in the embedded tokenizer, which is what makes every answer a
single token (the seed's schema requires it). Pools are tuples so that generation is
deterministic under a seed.
"""

from __future__ import annotations

NAMES: tuple[str, ...] = (
    "Bob", "Diego", "Rob", "James", "Jack", "Aaron", "Laura", "Mary", "John", "Tom",
    "Anna", "Kate", "Paul", "Lucy", "Mark", "Emma", "Sam", "Alice", "Ben", "Clara",
    "David", "Eva", "Frank", "Grace", "Henry", "Ivy", "Leo", "Mia",
)  # 28 names, as in the seed's dict pool

DICT_VARS: tuple[str, ...] = ("age", "score", "rank", "level", "count", "height")
LIST_VARS: tuple[str, ...] = ("data", "nums", "vals", "items", "xs", "seq")
DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))
ERROR_TOKEN = "Traceback"

# Subject-verb agreement: (singular, plural) pairs.
# Animate nouns: subjects and relative-clause nouns. The first twelve are the suite's own; the rest
# are the nouns of the seed's SVA files (Marks et al.: simple, nounpp, within_rc).
SVA_NOUNS: tuple[tuple[str, str], ...] = (
    ("friend", "friends"), ("dancer", "dancers"), ("doctor", "doctors"),
    ("teacher", "teachers"), ("farmer", "farmers"), ("pilot", "pilots"),
    ("singer", "singers"), ("writer", "writers"), ("lawyer", "lawyers"),
    ("author", "authors"), ("nurse", "nurses"), ("guard", "guards"),
    ("athlete", "athletes"), ("aunt", "aunts"), ("boy", "boys"), ("carpenter", "carpenters"),
    ("father", "fathers"), ("girl", "girls"), ("guy", "guys"), ("kid", "kids"), ("man", "men"),
    ("mother", "mothers"), ("poet", "poets"), ("uncle", "uncles"), ("victim", "victims"),
    ("woman", "women"), ("architect", "architects"), ("assistant", "assistants"), ("chef", "chefs"),
    ("driver", "drivers"), ("executive", "executives"), ("minister", "ministers"),
    ("parent", "parents"), ("skater", "skaters"),
)
# Inanimate nouns and prepositions of the seed's "nounpp" form (The uncles behind the dogs -> do).
SVA_PP_NOUNS: tuple[tuple[str, str], ...] = (
    ("bike", "bikes"), ("car", "cars"), ("cat", "cats"), ("chair", "chairs"), ("desk", "desks"),
    ("dog", "dogs"), ("table", "tables"), ("tree", "trees"), ("truck", "trucks"), ("window", "windows"),
)
SVA_PREPOSITIONS: tuple[str, ...] = ("behind", "beside", "near")
# Verbs inside the relative clause, as (agrees with singular, agrees with plural).
SVA_CLAUSE_VERBS: tuple[tuple[str, str], ...] = (
    ("visits", "visit"), ("likes", "like"), ("helps", "help"), ("knows", "know"),
    ("meets", "meet"), ("sees", "see"), ("trusts", "trust"), ("calls", "call"),
)
# Main verbs whose number the task asks for, as (singular form, plural form).
# The first four are the seed's SVA answers (is/are, has/have, does/do, goes/go).
SVA_MAIN_VERBS: tuple[tuple[str, str], ...] = (
    ("is", "are"), ("has", "have"), ("does", "do"), ("goes", "go"), ("runs", "run"), ("sings", "sing"),
    ("eats", "eat"), ("sleeps", "sleep"), ("talks", "talk"), ("walks", "walk"), ("waits", "wait"),
)
SVA_ENDINGS: tuple[str, ...] = ("home", "now", "today", "again", "later")

# The standard IOI pools (Wang et al.; the seed's ``data/ioi/ioi_train_21.json`` uses exactly these
# 99 names, 8 places and 8 objects), so the seed's own IOI file runs on the embedded world.
IOI_NAMES: tuple[str, ...] = (
    "Aaron", "Adam", "Alexander", "Alicia", "Allison", "Amanda", "Amber", "Amy", "Andrea", "Andrew",
    "Angela", "Anthony", "Ashley", "Benjamin", "Bradley", "Brandon", "Brian", "Brittany", "Bryan",
    "Charles", "Christina", "Christine", "Christopher", "Cody", "Courtney", "Crystal", "Daniel",
    "Danielle", "David", "Dustin", "Elizabeth", "Emily", "Eric", "Erica", "Erin", "Gregory", "Heather",
    "Jacob", "James", "Jamie", "Jason", "Jeffrey", "Jennifer", "Jeremy", "Jesse", "Jessica", "John",
    "Jonathan", "Jose", "Joseph", "Joshua", "Justin", "Katherine", "Katie", "Kelly", "Kenneth", "Kevin",
    "Kimberly", "Kristen", "Kyle", "Laura", "Lauren", "Lindsay", "Lindsey", "Lisa", "Mark", "Mary",
    "Matthew", "Megan", "Melissa", "Michael", "Michelle", "Nathan", "Nicholas", "Nicole", "Patrick",
    "Paul", "Rachel", "Rebecca", "Richard", "Robert", "Ryan", "Samantha", "Samuel", "Sara", "Sarah",
    "Scott", "Sean", "Shannon", "Stephanie", "Stephen", "Steven", "Thomas", "Tiffany", "Timothy",
    "Travis", "Tyler", "Vanessa", "William",
)
IOI_PLACES: tuple[str, ...] = (
    "garden", "hospital", "house", "office", "restaurant", "school", "station", "store",
)
IOI_OBJECTS: tuple[str, ...] = (
    "basketball", "bone", "computer", "drink", "kiss", "necklace", "ring", "snack",
)

# Filler vocabulary: plain sentences and small REPL sessions, so the embedded model sees
# text that is not one of the four tasks.
FILLER_ADJECTIVES: tuple[str, ...] = ("big", "small", "old", "new", "happy", "quiet", "red", "blue")
FILLER_VERBS: tuple[str, ...] = ("found", "saw", "liked", "made", "took", "read", "held", "left")
FILLER_NOUNS: tuple[str, ...] = ("cat", "dog", "car", "house", "tree", "letter", "song", "road")
