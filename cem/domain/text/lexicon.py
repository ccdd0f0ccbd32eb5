"""The cue lexicon of the text analyser: phrases customers use, each with what it signals.

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

# Effort that is not an emotion: what the customer had to do, or how little.
EFFORT_CUES = """
on hold | effort:-4 frustration:3
transferred | effort:-3 frustration:3 topic:staff
had to repeat | effort:-4 frustration:4
repeat my details | effort:-4 frustration:4
explain my problem again | effort:-4 frustration:4
had to call | effort:-4 frustration:3
had to explain | effort:-4 frustration:3
trying to reach | effort:-4 frustration:4
trying to cancel | effort:-4 frustration:4
been trying | effort:-4 frustration:4
tried everything | effort:-4 frustration:4
impossible to | effort:-4 frustration:3
too complicated | effort:-3 frustration:2
far too complicated | effort:-3 frustration:2
complicated | effort:-2
hard to | effort:-3
difficult | effort:-3
took ages | effort:-4
get through to | effort:-3
locked out | effort:-2 frustration:2 topic:account
easy | effort:4
easier | effort:3
easy to use | effort:4
effortless | effort:5 joy:2
painless | effort:5
quick and painless | effort:5
simple | effort:3
straightforward | effort:4
seamless | effort:4
hassle - free | effort:4
no hassle | effort:4 fixed
without any questions | effort:2 fixed
no questions asked | effort:3 fixed
in no time | effort:4
in minutes | effort:4
in seconds | effort:5
first try | effort:4
first time | effort:3
first call | effort:4
one call | effort:4
quick | effort:3
quickly | effort:3
fast | effort:2
faster | effort:3
super fast | effort:3 joy:3
quick reply | effort:3
quick resolution | effort:3
fast refund | effort:3
no problems | effort:2 pol:2 fixed
no problem | pol:1 fixed
no issues | effort:2 pol:2 fixed
no complaints | pol:2 act:praise fixed
not bad | pol:2 fixed
no worries | pol:0 act:none fixed
"""

# Problems, requests, suggestions and topics: what needs a reply and what it is about.
ACTION_CUES = """
please | act:response
can you | act:response
could you | act:response
can someone | act:response
could someone | act:response
i need | act:response
i want | act:response
i'd like | act:response
i would like | act:response
need help | act:response
help | act:response
how do i | act:response
how can i | act:response
where is | act:response
where can i | act:response
call me back | act:response topic:staff
callback | act:response topic:staff
call back | act:response topic:staff
kindly | act:response
asked | act:response
requested | act:response
wanted to know | act:response
advise | act:response
refund | act:response topic:billing
money back | act:response topic:billing pol:-1
cancel | act:response
cancelling | act:response
broken | disappointment:2 pol:-2 act:response topic:product_quality
broke | disappointment:3 pol:-2 act:response topic:product_quality
damaged | disappointment:2 pol:-2 act:response
cracked | disappointment:2 pol:-2 act:response topic:product_quality
torn | pol:-2 act:response topic:product_quality
faulty | pol:-2 act:response topic:product_quality
leaks | pol:-2 act:response topic:product_quality
leaked | disappointment:2 pol:-2 act:response topic:product_quality
crushed | disappointment:2 pol:-2 act:response
empty | pol:-2 act:response
someone else's | pol:-2 act:response
doesn't exist | pol:-2 act:response
doesn't accept | frustration:2 pol:-2 act:response
fixed | outcome
solved | outcome
resolved | outcome
sorted | outcome
working | outcome
works | outcome
received | outcome
replied | outcome
helped | outcome
refunded | outcome topic:billing
delivered | outcome topic:delivery
shipped | outcome topic:delivery
processed | outcome
got back to me | outcome
get | outcome
got | outcome
your help | fixed
doesn't solve | frustration:2 pol:-2 act:response
didn't solve | frustration:2 pol:-2 act:response
not fixed | frustration:2 pol:-2 act:response fixed
isn't fixed | frustration:2 pol:-2 act:response fixed
could not access | frustration:2 pol:-2 act:response
can't access | frustration:2 pol:-2 act:response
cannot access | frustration:2 pol:-2 act:response
too expensive | disappointment:1 pol:-2 topic:price
too high | disappointment:2 pol:-2 topic:price
higher than | pol:-1 topic:price
soaked | pol:-2
missing | pol:-2 act:response
wrong | pol:-2 act:response
charged twice | pol:-2 act:response topic:billing
double charge | pol:-2 act:response topic:billing
duplicate | pol:-1 act:response
doesn't work | pol:-2 act:response
does not work | pol:-2 act:response
don't work | pol:-2 act:response
not working | pol:-2 act:response
didn't help | pol:-2 act:response
never arrived | frustration:3 pol:-2 act:response topic:delivery
never came | frustration:3 pol:-2 act:response
never showed up | frustration:3 pol:-2 act:response
never called | frustration:3 pol:-2 act:response topic:staff
not received | pol:-2 act:response
haven't received | pol:-2 act:response
have not received | pol:-2 act:response
hasn't shipped | pol:-2 act:response topic:delivery
error | pol:-2 act:response
crash* | pol:-2 act:response
failed | pol:-2 act:response
failing | pol:-2 act:response
can't log | frustration:2 pol:-2 act:response topic:account
can't login | frustration:2 pol:-2 act:response topic:account
cannot log | frustration:2 pol:-2 act:response topic:account
unable to | frustration:2 pol:-2 act:response
can't | pol:-1 act:response
couldn't | pol:-1
didn't | pol:-1
late | pol:-1 topic:delivery
down | pol:-1
suspended | pol:-2 act:response topic:account
spam | pol:-1
it would be nice | act:suggestion
it would be great | act:suggestion
would be nice if | act:suggestion
would be great if | act:suggestion
would be good if | act:suggestion
you should | act:suggestion
should offer | act:suggestion
should have | act:suggestion
there should be | act:suggestion
please add | act:suggestion
please make | act:suggestion
could you add | act:suggestion
can you add | act:suggestion
i wish | act:suggestion
wish you | act:suggestion
suggest* | act:suggestion
feature request | act:suggestion
need better | act:suggestion disappointment:2
next time | act:suggestion
go back to | act:suggestion
make it easier | act:suggestion
"""

TOPIC_CUES = """
bill | topic:billing
bills | topic:billing
billed | topic:billing
billing | topic:billing
invoice* | topic:billing
charge | topic:billing
charged | topic:billing
charges | topic:billing
charging | topic:billing
payment* | topic:billing
pay | topic:billing
paid | topic:billing
paying | topic:billing
direct debit | topic:billing
statement | topic:billing
card | topic:billing
vat | topic:billing
credit | topic:billing
refund* | topic:billing
deliver* | topic:delivery
parcel* | topic:delivery
package* | topic:delivery
shipping | topic:delivery
shipped | topic:delivery
ship | topic:delivery
courier | topic:delivery
driver | topic:delivery topic:staff
tracking | topic:delivery
arrived | topic:delivery outcome
arrive | topic:delivery
where is my order | topic:delivery
where my order | topic:delivery
status of my order | topic:delivery
order status | topic:delivery
return | topic:delivery
returning | topic:delivery
returns | topic:delivery
address | topic:delivery
postcode | topic:delivery
log in | topic:account
logged | topic:account
login | topic:account
log-in | topic:account
sign in | topic:account
password | topic:account
account | topic:account
2fa | topic:account
two-factor | topic:account
two - factor | topic:account
verification | topic:account
verify | topic:account
portal | topic:account
logging | topic:account
log out | topic:account
reset link | topic:account
security | topic:account
data | topic:account
email address | topic:account
my data | topic:account
quality | topic:product_quality
defective | topic:product_quality
material | topic:product_quality
fabric | topic:product_quality
as described | topic:product_quality
waterproof | topic:product_quality
works perfectly | topic:product_quality
works as expected | topic:product_quality
fit | topic:product_quality
product | topic:product_quality
warranty | topic:product_quality
sound | topic:product_quality
agent | topic:staff
agents | topic:staff
staff | topic:staff
rep | topic:staff
representative | topic:staff
technician | topic:staff
installer | topic:staff
colleague | topic:staff
assistant | topic:staff
manager | topic:staff
customer service | topic:staff
answered | topic:staff outcome
called back | topic:staff
handled | topic:staff
support | topic:staff
call centre | topic:staff
call center | topic:staff
on the phone | topic:staff
the team | topic:staff
price* | topic:price
pricing | topic:price
expensive | topic:price
cheap | topic:price
cheaper | topic:price
cost* | topic:price
fee | topic:price
fees | topic:price
discount | topic:price
promo* | topic:price
coupon | topic:price
plan | topic:price
tariff | topic:price
value for money | topic:price
great value | topic:price joy:2
worth | topic:price
upgrade | topic:price
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
