"""Text understanding for CX: per-sentence sentiment, emotions, effort, actionability and topics, rolled up per
event. Pure functions over the project's own lexicon (cem/domain/text/lexicon.py) and VADER."""

from cem.domain.text.actionability import ACTIONABILITY
from cem.domain.text.cues import EMOTIONS, TOPICS
from cem.domain.text.signals import SentenceSignals, TextSignals, analyse, analyse_sentences, roll_up

__all__ = ["ACTIONABILITY", "EMOTIONS", "TOPICS", "SentenceSignals", "TextSignals", "analyse", "analyse_sentences",
           "roll_up"]
