"""The text analyser's rules, one behaviour at a time (the accuracy over many sentences is in test_text_eval)."""

from __future__ import annotations

import pytest

from cem.domain.text import TextSignals, analyse, analyse_sentences, roll_up
from cem.domain.text.cues import INDEX, CueIndex, find_cues, match_length, parse_lexicon
from cem.domain.text.effort import counted_effort
from cem.domain.text.sentences import split_sentences, tokens


def emotions_of(text: str) -> dict[str, int]:
    signals = analyse(text)
    assert signals is not None
    return dict(signals.emotions)


def effort_of(text: str) -> float | None:
    signals = analyse(text)
    assert signals is not None
    return signals.effort


# ---- sentences and tokens ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("Hi. My parcel is late! Where is it?", ["Hi.", "My parcel is late!", "Where is it?"]),
    ("It costs 9.99 now.", ["It costs 9.99 now."]),
    ("first line\nsecond line", ["first line", "second line"]),
    ("@ShopCo   ", []),
    ("Wait... what?", ["Wait...", "what?"]),
])
def test_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_tokens_read_informal_spelling_and_emphasis() -> None:
    spelled = tokens("thank u sooo much, I CANT log in AGAIN!!!")
    assert spelled.words[:4] == ("thank", "you", "soo", "much")
    assert "can't" in spelled.words
    assert spelled.elongated and spelled.exclamations == 3 and "again" in spelled.capital_words
    assert tokens("THIS IS NOT OK").shouting and not tokens("I got the VAT invoice").shouting


def test_a_text_of_mentions_only_has_no_signals() -> None:
    assert analyse("@ShopCo https://example.org/x") is None
    assert analyse("") is None and analyse(None) is None and analyse("   ") is None


# ---- cues -----------------------------------------------------------------------------------------------
def test_the_longest_phrase_wins_and_gaps_match() -> None:
    index = CueIndex(parse_lexicon("still | pol:-1\nstill waiting | effort:-3\nwhat does ~ mean | confusion:2"))
    words = tokens("Still waiting. What does pending authorisation mean?").words
    names = [m.cue.name for m in find_cues(index, words)]
    assert names == ["still waiting", "what does ~ mean"]
    assert match_length(("what", "does", "~", "mean"), ("what", "does", "a", "b", "c", "d", "mean"), 0) == 0


def test_an_unknown_effect_in_the_lexicon_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_lexicon("angry | rage:9")


def test_negation_stays_inside_its_clause() -> None:
    negated = find_cues(INDEX, tokens("I am not happy").words)
    assert [m.negated for m in negated if m.cue.name == "happy"] == [True]
    closing = find_cues(INDEX, tokens("No, that's great").words)
    assert [m.negated for m in closing if m.cue.name == "great"] == [False]


# ---- emotions ------------------------------------------------------------------------------------------
def test_each_emotion_label_has_a_plain_example() -> None:
    assert "anger" in emotions_of("This is outrageous.")
    assert "frustration" in emotions_of("I'm so fed up with this.")
    assert "confusion" in emotions_of("I don't understand this invoice.")
    assert "disappointment" in emotions_of("Honestly a bit disappointed.")
    assert "worry" in emotions_of("I'm worried about my data.")
    assert "joy" in emotions_of("I love it.")
    assert "gratitude" in emotions_of("Thanks for your help.")


def test_a_neutral_sentence_has_no_emotion_and_no_intensity() -> None:
    signals = analyse("My order number is 48213.")
    assert signals is not None and signals.emotions == () and signals.emotion_intensity is None


def test_intensity_rises_with_intensifiers_exclamations_and_capitals() -> None:
    plain = emotions_of("I am disappointed.")["disappointment"]
    assert emotions_of("I am really disappointed.")["disappointment"] == plain + 1
    assert emotions_of("I am really disappointed!!")["disappointment"] == plain + 2
    assert emotions_of("I AM REALLY DISAPPOINTED!!")["disappointment"] == min(5, plain + 3)
    assert emotions_of("This is ridiculous.")["anger"] + 2 == emotions_of("This is SO ridiculous!!!")["anger"]


def test_a_negated_positive_word_is_disappointment_and_a_negated_negative_one_is_nothing() -> None:
    assert emotions_of("I'm not happy with this.") == {"disappointment": 2}
    assert "anger" not in emotions_of("I'm not angry.")


def test_sarcasm_removes_the_positive_reading() -> None:
    assert "joy" not in emotions_of("Oh great, another hour on hold.")
    sarcastic = emotions_of("Great. Just great. The item is broken AGAIN.")
    assert "joy" not in sarcastic and "frustration" in sarcastic
    sincere = emotions_of("Great. The item arrived today.")
    assert "joy" in sincere


def test_a_short_thanks_after_a_complaint_stays_polite() -> None:
    assert "gratitude" in emotions_of("My refund is missing, can you check? Thanks.")


# ---- effort --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("This is the third time I'm contacting you.", -4),
    ("I called twice already.", -3),
    ("I have emailed five times.", -5),
    ("I waited 40 minutes in the queue.", -3),
    ("I have been on hold for over an hour.", -4),
    ("It took two minutes.", 4),
    ("Sorted within an hour.", 4),
    ("It took 3 weeks to get an answer.", -4),
    ("Easy to order.", 4),
    ("Not easy at all.", -4),
    ("I ordered a blue jacket.", None),
    ("You charged me twice.", None),  # the company repeated something, not the customer
])
def test_effort(text: str, expected: int | None) -> None:
    assert effort_of(text) == expected


def test_counted_effort_names_its_cue() -> None:
    assert counted_effort("i waited 40 minutes") == [(-3, "waited 40 minutes")]
    assert counted_effort("it took 5 minutes") == [(4, "took 5 minutes")]


def test_hard_effort_without_a_named_feeling_is_frustration() -> None:
    assert emotions_of("I have emailed five times.") == {"frustration": 4}


# ---- actionability and topics ---------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("Can you tell me where my order is?", "needs_response"),
    ("The screen arrived cracked.", "needs_response"),
    ("It would be nice if I could pay by PayPal.", "suggestion"),
    ("The agent was fantastic, thank you!", "praise"),
    ("Thanks in advance.", "not_meaningful"),
    ("I ordered on Monday.", "not_meaningful"),
])
def test_actionability(text: str, expected: str) -> None:
    signals = analyse(text)
    assert signals is not None and signals.actionability == expected


def test_topics_come_in_a_fixed_order_without_repeats() -> None:
    signals = analyse("The invoice for my parcel is wrong, the bill shows the delivery twice and the price is off.")
    assert signals is not None and signals.topics == ("billing", "delivery", "price")


# ---- roll-up -------------------------------------------------------------------------------------------
def test_roll_up_takes_the_union_at_the_highest_intensity_and_the_mean_effort_of_sentences_with_one() -> None:
    sentences = analyse_sentences("I am disappointed. I am REALLY disappointed!! It took two minutes. "
                                  "I waited 40 minutes. I live in Paris.")
    assert [s.effort for s in sentences] == [None, None, 4, -3, None]
    event = roll_up(sentences)
    assert dict(event.emotions)["disappointment"] == max(dict(s.emotions).get("disappointment", 0)
                                                          for s in sentences)
    assert event.effort == 0.5  # (4 - 3) / 2: the three sentences without effort are not zeros
    assert event.sentences == 5


def test_roll_up_actionability_is_the_most_demanding_sentence() -> None:
    signals = analyse("The courier was lovely. It would be nice to choose a time slot. Where is my refund?")
    assert signals is not None and signals.actionability == "needs_response"
    praise_and_idea = analyse("The courier was lovely. It would be nice to choose a time slot.")
    assert praise_and_idea is not None and praise_and_idea.actionability == "suggestion"


def test_roll_up_sentiment_is_the_mean_of_the_sentences_with_a_polarity() -> None:
    sentences = analyse_sentences("Hello. The parcel is missing and I'm furious.")
    assert sentences[0].polarity == 0 and sentences[1].polarity == -1
    signals = roll_up(sentences)
    assert signals.sentiment == sentences[1].sentiment


def test_every_label_names_a_cue() -> None:
    signals = analyse("Third time I call about my bill, I'm furious!")
    assert isinstance(signals, TextSignals)
    families = {cue.split(":", 1)[0] for cue in signals.cues}
    assert {"anger", "effort", "topic"} <= families
    assert -5 <= signals.sentiment <= 5


def test_long_texts_are_bounded() -> None:
    signals = analyse("The parcel is late. " * 2_000)
    assert signals is not None and signals.sentences == 40


@pytest.mark.parametrize("text", ["Nothing is fixed.", "My parcel hasn't arrived.", "Nobody answered.",
                                  "I didn't get my refund."])
def test_a_negated_outcome_is_a_problem(text: str) -> None:
    signals = analyse(text)
    assert signals is not None
    assert signals.actionability == "needs_response" and "frustration" in dict(signals.emotions)
    assert any(cue.startswith("frustration:not ") for cue in signals.cues)  # the negated outcome named as the cue
    assert signals.sentiment < 0


@pytest.mark.parametrize("text", ["That fixed it, thanks a lot!", "It works now, thanks for your help!"])
def test_an_outcome_that_happened_with_thanks_is_praise(text: str) -> None:
    signals = analyse(text)
    assert signals is not None and signals.actionability == "praise"


def test_a_problem_told_in_a_friendly_tone_still_needs_a_response() -> None:
    signals = analyse("The agent was nice but nothing is fixed.")
    assert signals is not None and signals.actionability == "needs_response"
    assert "joy" in dict(signals.emotions)  # the kind words are still read
