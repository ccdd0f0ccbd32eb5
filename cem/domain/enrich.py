"""Enrichment: sentiment of free text and device/OS/browser from a user agent. Pure functions over the
offline models that ship inside the packages (VADER lexicon, ua-parser regexes)."""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse as parse_user_agent
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

_vader = SentimentIntensityAnalyzer()
# VADER's cost grows with text length; the head of a long text carries its tone.
SENTIMENT_MAX_CHARS = 2_000


# Texts up to this length are memoised: VADER costs 20-90 us even for a one-line message, and short texts
# recur (re-sent duplicates, "thanks", canned survey comments). Longer ones rarely repeat and would only
# fill memory (at most SENTIMENT_CACHE_SIZE * SENTIMENT_CACHE_MAX_CHARS characters are kept).
SENTIMENT_CACHE_MAX_CHARS = 280
SENTIMENT_CACHE_SIZE = 16_384


def sentiment(text: str | None) -> float | None:
    """VADER compound score in [-1, 1], or None when there is no text to score."""
    if not text or not text.strip():
        return None
    if len(text) <= SENTIMENT_CACHE_MAX_CHARS:
        return _cached_sentiment(text)
    return _score(text[:SENTIMENT_MAX_CHARS])


def _score(text: str) -> float:
    return round(_vader.polarity_scores(text)["compound"], 4)


_cached_sentiment = lru_cache(maxsize=SENTIMENT_CACHE_SIZE)(_score)


@lru_cache(maxsize=65_536)
def device_of(user_agent: str) -> tuple[str, str, str]:
    """(device family, OS family, browser family) of a user agent; empty strings when unknown."""
    if not user_agent:
        return ("", "", "")
    result = parse_user_agent(user_agent[:1_000])
    device = result.device.family if result.device else ""
    os_family = result.os.family if result.os else ""
    browser = result.user_agent.family if result.user_agent else ""
    return (device or "", os_family or "", browser or "")
