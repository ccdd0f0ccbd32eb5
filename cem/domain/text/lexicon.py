"""The cue lexicon of the text analyser: phrases customers use, each with what it signals. Feelings are here;
effort, requests, problems, suggestions and topics in `lexicon_cx.py`.

Written for this project from scratch (same licence as the project); no third-party word list is copied in. One
entry per line: `phrase | effects`.
- phrase: lower-case tokens as `sentences.tokens` produces them (words, single punctuation marks, emoji). A token
  ending in `*` matches any token starting with it (`frustrat*`); `~` matches zero to three tokens (`why ~ charged`).
- effects, space-separated:
  - `<emotion>:<1-5>` an emotion and its base intensity;
  - `effort:<-5..5>` customer effort, negative = hard;
  - `act:response` / `act:suggestion` / `act:praise` / `act:none` actionability cues (`none` marks politeness that
    is not praise: "thanks in advance");
  - `topic:<topic>`;
  - `pol:<-3..3>` a polarity nudge for CX phrases VADER reads as neutral ("charged twice", "no complaints");
  - `sarcasm` marks a phrase that turns positive words around it into their opposite ("just great", "thanks for
    nothing");
  - `fixed`: negation before the phrase does not turn it around ("no complaints" is already negated);
  - `outcome`: the thing the customer wanted happening ("fixed", "arrived", "answered"): negated ("nothing is
    fixed", "hasn't arrived", "nobody answered") it is a problem: frustration 2, polarity -2, needs a response.
"""

from __future__ import annotations

EMOTION_CUES = """
angry | anger:3
angrier | anger:3
furious | anger:5
livid | anger:5
outraged | anger:5
outrage | anger:4
outrageous | anger:4
infuriating | anger:4
unacceptable | anger:4
ridiculous | anger:3
disgusting | anger:4
disgrace | anger:4
disgraceful | anger:4
scam | anger:5 pol:-2
scammers | anger:5
crooks | anger:5
rip - off | anger:4 topic:price
rip off | anger:4 topic:price
ripoff | anger:4 topic:price
shady | anger:3
cheated | anger:4
is a joke | anger:3
are a joke | anger:3
a joke | anger:2
pathetic | anger:4
worst | anger:4
terrible | anger:3
awful | anger:3
horrible | anger:3
appalling | anger:4
rude | anger:3
dismissive | anger:3
how dare | anger:4
never again | anger:4
never ordering | anger:5
never buying | anger:5
thanks for nothing | anger:3 sarcasm fixed pol:-2
are you kidding | anger:4
can't believe | anger:3
cannot believe | anger:3
unbelievable | anger:3
hung up on | anger:4
shouting | anger:5
shouted | anger:5
threatened | anger:4
hate | anger:2
useless | anger:3
incompetent | anger:4
lied | anger:4
upset | anger:3 frustration:2
treated like this | anger:3 fixed topic:staff
waste of money | anger:3
fix it or | anger:3
sue | anger:4
wtf | anger:4
😡 | anger:4
😤 | anger:3
🤬 | anger:5
frustrated | frustration:3
frustrating | frustration:3
frustration | frustration:3
annoying | frustration:3
annoyed | frustration:3
fed up | frustration:4
sick of | frustration:4
tired of | frustration:4
every single time | frustration:3 effort:-3
every time | frustration:2 effort:-2
keeps | frustration:2 effort:-3
keep getting | frustration:3 effort:-3
nothing works | frustration:4 effort:-4
in circles | frustration:4 effort:-4
gave up | frustration:4 effort:-4
give up | frustration:3 effort:-3
nobody helps | frustration:4 effort:-3
nobody can help | frustration:4 effort:-4
nobody | frustration:2
no one | frustration:2
no reply | frustration:3 effort:-3
no answer | frustration:3 effort:-3
no response | frustration:3 effort:-2
still no | frustration:3 effort:-2
still not | frustration:3 effort:-2
still nothing | frustration:3 effort:-2
still hasn't | frustration:3 effort:-3
still isn't | frustration:2
still don't | frustration:2
still waiting | frustration:3 effort:-3
waiting | effort:-2
taking forever | frustration:4 effort:-4
takes forever | frustration:4 effort:-4
took ages | frustration:3 effort:-4
took forever | frustration:4 effort:-4
ugh | frustration:4
chasing | frustration:4 effort:-4
nightmare | frustration:4 effort:-4
desperate | frustration:3 worry:3
once again | frustration:2
yet again | frustration:3
all over again | frustration:3
just great | frustration:3 sarcasm fixed pol:-2
oh great | frustration:3 sarcasm fixed pol:-2
great , another | frustration:3 sarcasm fixed pol:-2
yeah right | frustration:2 sarcasm fixed pol:-2
love it when | frustration:3 sarcasm fixed pol:-2
🙃 | frustration:3 sarcasm
🙄 | frustration:2 disappointment:2 sarcasm
confused | confusion:3
confusing | confusion:3
don't understand | confusion:3
do not understand | confusion:3
can't understand | confusion:3
unable to understand | confusion:3
impossible to understand | confusion:4
don't get it | confusion:3
no idea | confusion:3
not sure | confusion:2
unclear | confusion:2
makes no sense | confusion:3
doesn't make sense | confusion:3
what does ~ mean | confusion:2
don't know why | confusion:3
don't know what to do | confusion:3
can't figure out | confusion:3
can't find | confusion:2 effort:-2
i'm lost | confusion:3
why is | confusion:2
why was | confusion:2
why did | confusion:2
why does | confusion:2
why do | confusion:2
why | confusion:1
wait , so | confusion:2
is it just me | confusion:1
hmm | confusion:2
🤔 | confusion:3
disappointed | disappointment:3
disappointing | disappointment:3
disappointment | disappointment:3
dissapointed | disappointment:3
disapointed | disappointment:3
let down | disappointment:3
expected better | disappointment:3
expected more | disappointment:3
unhappy | disappointment:3
shame | disappointment:2
sadly | disappointment:2
unfortunately | disappointment:1
used to be | disappointment:2
gone downhill | disappointment:4 topic:product_quality
gone down | disappointment:3
poor quality | disappointment:3 topic:product_quality
very poor | disappointment:3
feels cheap | disappointment:2 topic:product_quality
fell apart | disappointment:4 topic:product_quality
stopped working | disappointment:3 topic:product_quality pol:-2
broke after | disappointment:3 topic:product_quality pol:-2
lost a loyal customer | disappointment:4 pol:-2
different from the photos | disappointment:3 topic:product_quality
smaller than advertised | disappointment:2 topic:product_quality
bring back | disappointment:2 act:suggestion
😞 | disappointment:4
😢 | disappointment:3
☹ | disappointment:3
worried | worry:3
worry | worry:3
worrying | worry:3
concerned | worry:3
afraid | worry:3
scared | worry:4
anxious | worry:4
nervous | worry:3
hacked | worry:4 topic:account pol:-2
stolen | worry:4 pol:-2
suspicious | worry:3
urgently | worry:2
got lost | worry:3 topic:delivery
love* | joy:4
loving | joy:4
loved | joy:4
amazing | joy:4
awesome | joy:4
great | joy:3
good | joy:1
good morning | fixed
excellent | joy:3
brilliant | joy:4
perfect | joy:3
perfectly | joy:2
fantastic | joy:4
wonderful | joy:4
delighted | joy:4
happy | joy:3
pleased | joy:2
impressed | joy:3
impressive | joy:3
the best | joy:4
rock | joy:4
10 / 10 | joy:3
well done | joy:3 act:praise
good job | joy:3 act:praise
great job | joy:3 act:praise
keep up the good work | joy:2 act:praise
nice | joy:2
lovely | joy:2
friendly | joy:2
helpful | joy:2 topic:staff
polite | joy:2
patient | joy:2
knowledgeable | joy:2
unhelpful | disappointment:3 topic:staff
ignored | anger:3
cute | joy:4
pleasant | joy:2
smooth | joy:2 effort:4
saved my day | joy:4
couldn't be happier | joy:5 fixed
could not be happier | joy:5 fixed
never had such | joy:2 fixed
above and beyond | joy:3 act:praise
😍 | joy:4
😊 | joy:3
🙂 | joy:2
❤ | joy:4
💖 | joy:4
🔥 | joy:3
👏 | joy:3
💯 | joy:4
👍 | joy:2
🚀 | joy:3
thank* | gratitude:2
thx | gratitude:2
cheers | gratitude:3
grateful | gratitude:4
appreciate | gratitude:3
appreciated | gratitude:3
kind of you | gratitude:3
shoutout | gratitude:2 joy:2 act:praise
big thanks | gratitude:4
🙏 | gratitude:4
thanks in advance | gratitude:1 act:none
thank you in advance | gratitude:1 act:none
"""

INTENSIFIERS = frozenset({"very", "so", "soo", "really", "extremely", "absolutely", "totally", "super", "completely",
                          "utterly", "incredibly", "truly", "seriously", "honestly", "far", "way"})
NEGATORS = frozenset({"not", "no", "never", "nothing", "without", "hardly", "cannot", "nobody", "isn't", "wasn't",
                      "aren't", "don't", "doesn't", "didn't", "won't", "can't", "couldn't", "haven't", "hasn't"})
# Informal spellings and contractions written without an apostrophe, read as their usual form.
SPELLINGS = {
    "u": "you", "ur": "your", "r": "are", "thx": "thanks", "thanx": "thanks", "ty": "thanks", "tnx": "thanks",
    "pls": "please", "plz": "please", "dont": "don't", "cant": "can't", "doesnt": "doesn't", "didnt": "didn't",
    "isnt": "isn't", "wasnt": "wasn't", "havent": "haven't", "hasnt": "hasn't", "couldnt": "couldn't",
    "im": "i'm", "ive": "i've", "wont": "won't", "youre": "you're", "logged-in": "logged",
}
