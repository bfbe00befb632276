"""Readable, folder-safe names for clusters of LoRAs.

A cluster is named, in order of preference, after the training tags most of
its members share, after the words most of their file names share, or
``cluster-N``. Tags and words that every cluster of the library has in
common (``1girl``, ``style``) do not name a cluster.
"""

import math
import re
from collections import Counter

__all__ = ["folder_safe_name", "name_clusters", "name_tokens"]

MIN_SHARE = 0.34
"""A tag or word names a cluster only when at least this share of its members carry it."""

MIN_LIFT = 1.2
"""With several clusters, a term names one only when its share there is this many times its library share."""

MAX_NAME_TERMS = 2
"""A cluster name joins at most this many tags or words."""

TAGS_PER_ENTRY = 10
"""Only each LoRA's most frequent training tags take part in naming."""

MAX_NAME_CHARS = 60
"""Folder names are cut to this many characters."""

NOISE_TOKENS = frozenset(
    """
    a an and by for from in of on the to with
    lora loras lycoris locon loha lokr dora lyco peft adapter adapters model models
    pytorch weights weight safetensors ckpt pt pth bin checkpoint final last best
    unet text encoder te te1 te2 sd sd1 sd15 sd2 sd21 sdxl xl sd3 flux pony
    rank dim alpha fp16 fp32 bf16 epoch step steps trained train output out
    version ver new old test copy
    """.split()
)
"""File-name words that carry no information about a LoRA's content."""

_VERSION_TOKEN = re.compile(r"^(?:v|ver|e|ep|epoch|s|step|r|rank|dim|d|a|alpha|sd|fp|bf)?\d+(?:[.]\d+)*$")
_SPLIT = re.compile(r"[\s_\-./\\()\[\]{},;:+]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_UNSAFE_CHARS = re.compile(r"[^\w .()\-]+", re.UNICODE)
_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"] + [f"com{i}" for i in range(1, 10)] + [f"lpt{i}" for i in range(1, 10)]
)


def name_tokens(stem):
    """Split a file stem into lower-case content words.

    The stem is split on spaces, ``_ - . /`` and similar separators, and on
    camelCase boundaries. Noise words (``lora``,
    ``pytorch``, ``weights``), version and step markers (``v1``, ``e10``,
    ``000500``) and single characters are dropped.

    Parameters
    ----------
    stem : str
        A file name without its ending, such as ``"animeStyle_v2-000010"``.

    Returns
    -------
    list of str
        The content words in their original order, without repeats.
    """
    words = []
    for part in _SPLIT.split(stem):
        words += [piece for piece in _CAMEL.split(part) if piece]

    tokens = []
    for word in words:
        token = word.lower()
        if len(token) < 2 or token in NOISE_TOKENS or _VERSION_TOKEN.match(token) or token.isdigit():
            continue
        tokens.append(token)
    return list(dict.fromkeys(tokens))


def _normalise_tag(tag):
    if isinstance(tag, (list, tuple)):
        tag = tag[0] if tag else ""
    text = str(tag).replace("\\", "").strip().lower()
    text = re.sub(r":[\d.]+$", "", text)
    return " ".join(text.replace("_", " ").split())


def _entry_tags(entry):
    """Return the normalised top training tags of an entry (metadata ``[tag, count]`` pairs or plain tags)."""
    tags = list(entry.training_tags(limit=TAGS_PER_ENTRY))
    if not tags:
        tags = list((entry.metadata or {}).get("tags") or [])[:TAGS_PER_ENTRY]
    normalised = [_normalise_tag(tag) for tag in tags]
    return _ranked([tag for tag in normalised if tag])


def _entry_words(entry):
    return _ranked(name_tokens(entry.stem))


def _ranked(terms):
    """Return ``{term: position of its first occurrence}``."""
    ranks = {}
    for position, term in enumerate(terms):
        ranks.setdefault(term, position)
    return ranks


def _pick_terms(member_sets, library_counts, library_size, several_clusters):
    """Return up to MAX_NAME_TERMS terms most members share, most distinctive first.

    Ties go to the term ranked earlier in the members' lists: the more
    frequent training tag, or the earlier file-name word.
    """
    if not member_sets:
        return []

    counts = Counter(term for terms in member_sets for term in terms)
    needed = max(1, math.ceil(MIN_SHARE * len(member_sets)))
    if len(member_sets) >= 3:
        needed = max(needed, 2)

    scored = []
    for term, count in counts.items():
        if count < needed:
            continue
        share = count / len(member_sets)
        library_share = library_counts[term] / library_size
        if several_clusters and share < MIN_LIFT * library_share:
            continue
        mean_rank = sum(terms[term] for terms in member_sets if term in terms) / count
        scored.append((-share * math.sqrt(share / library_share), mean_rank, term))

    scored.sort()
    return [term for _, _, term in scored[:MAX_NAME_TERMS]]


def folder_safe_name(text, fallback):
    """Return ``text`` as a name that is valid as a folder on Linux, macOS and Windows.

    Characters other than letters, digits, space, ``.``, ``_``, ``-`` and
    brackets become ``-``. Leading and trailing dots and spaces are removed,
    and the name is cut to ``MAX_NAME_CHARS``. Windows device names (``con``,
    ``nul``, ``com1``) and empty results give ``fallback``.
    """
    name = _UNSAFE_CHARS.sub("-", text)
    name = " ".join(name.split())
    name = re.sub(r"-{2,}", "-", name)
    name = name[:MAX_NAME_CHARS].strip(" .-")
    if not name or name.split(".")[0].lower() in _WINDOWS_RESERVED:
        return fallback
    return name


def _make_unique(names):
    """Append ``-2``, ``-3`` ... to repeated names, comparing without case (macOS and Windows folders)."""
    seen = set()
    unique = []
    for name in names:
        candidate = name
        number = 2
        while candidate.lower() in seen:
            candidate = f"{name}-{number}"
            number += 1
        seen.add(candidate.lower())
        unique.append(candidate)
    return unique


def name_clusters(groups):
    """Name each group of entries after shared training tags, else shared file-name words.

    Parameters
    ----------
    groups : list of (int, list of LibraryEntry)
        Cluster id and members of every cluster of one library.

    Returns
    -------
    dict
        ``{cluster id: name}``. Names are folder-safe and unique without
        regard to case; a cluster with neither shared tags nor shared words
        is called ``cluster-<id>``.
    """
    tag_sets = {cluster_id: [_entry_tags(e) for e in members] for cluster_id, members in groups}
    word_sets = {cluster_id: [_entry_words(e) for e in members] for cluster_id, members in groups}
    library_size = sum(len(members) for _, members in groups) or 1
    library_tags = Counter(tag for sets in tag_sets.values() for terms in sets for tag in terms)
    library_words = Counter(word for sets in word_sets.values() for terms in sets for word in terms)

    several = len(groups) > 1
    raw_names = []
    for cluster_id, _ in groups:
        terms = _pick_terms(tag_sets[cluster_id], library_tags, library_size, several)
        if not terms:
            terms = _pick_terms(word_sets[cluster_id], library_words, library_size, several)
        fallback = f"cluster-{cluster_id}"
        raw_names.append(folder_safe_name(" ".join(terms), fallback) if terms else fallback)

    unique = _make_unique(raw_names)
    return {cluster_id: name for (cluster_id, _), name in zip(groups, unique)}
