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
SVA_NOUNS: tuple[tuple[str, str], ...] = (
    ("friend", "friends"), ("dancer", "dancers"), ("doctor", "doctors"),
    ("teacher", "teachers"), ("farmer", "farmers"), ("pilot", "pilots"),
    ("singer", "singers"), ("writer", "writers"), ("lawyer", "lawyers"),
    ("author", "authors"), ("nurse", "nurses"), ("guard", "guards"),
)
# Verbs inside the relative clause, as (agrees with singular, agrees with plural).
SVA_CLAUSE_VERBS: tuple[tuple[str, str], ...] = (
    ("visits", "visit"), ("likes", "like"), ("helps", "help"), ("knows", "know"),
    ("meets", "meet"), ("sees", "see"), ("trusts", "trust"), ("calls", "call"),
)
# Main verbs whose number the task asks for, as (singular form, plural form).
SVA_MAIN_VERBS: tuple[tuple[str, str], ...] = (
    ("goes", "go"), ("runs", "run"), ("sings", "sing"), ("eats", "eat"),
    ("sleeps", "sleep"), ("talks", "talk"), ("walks", "walk"), ("waits", "wait"),
)
SVA_ENDINGS: tuple[str, ...] = ("home", "now", "today", "again", "later")

IOI_PLACES: tuple[str, ...] = ("restaurant", "store", "park", "school", "office", "beach")
IOI_OBJECTS: tuple[str, ...] = ("snack", "drink", "book", "gift", "ball", "key")

# Filler vocabulary: plain sentences and small REPL sessions, so the embedded model sees
# text that is not one of the four tasks.
FILLER_ADJECTIVES: tuple[str, ...] = ("big", "small", "old", "new", "happy", "quiet", "red", "blue")
FILLER_VERBS: tuple[str, ...] = ("found", "saw", "liked", "made", "took", "read", "held", "left")
FILLER_NOUNS: tuple[str, ...] = ("cat", "dog", "car", "house", "tree", "letter", "song", "road")
