"""The cue lexicon, part two: effort, requests and problems, suggestions, and topics. Same format and licence as
`lexicon.py` (written for this project; no third-party word list copied in)."""

from __future__ import annotations

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
