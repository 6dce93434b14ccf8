"""An operator's label: which bank answer was right for a customer's question.

Ratings and picks come from customers, who are sometimes careless, and a question whose right answer was not among
the ones offered teaches a round nothing right at all: its evidence only says which answers were wrong. Those are
the conversations operators read anyway — a hand-off, the inbox's "to label" filter (turn_reads.TO_LABEL_SQL: 👎
without a pick, "None of these", not understood; no label yet). From the conversation page they can say
which answer it should have been ("Right answer"), and the next round learns it:

- the label is recorded as a signal of kind `label` about the turn, under the turn's sender (so `rsft forget`
  removes it with the conversation); labelling a turn again records a new label, and the newest one counts;
- a round reads it as that turn's evidence, replacing the customer's rating and signals of the turn: a vote of
  `feedback.label_weight` 👍 for the answer on that question (0: labels are ignored), explicit, so the answer is
  trusted there and joins the prompt's candidates like a pick (stages/evidence.py, `sample.named`).

A label may name any answer of the working bank (answers.yml plus the console's edits); one the live model's bank
does not hold yet counts from the round after it is published.

    POST /api/turns/{turn_id}/label   {"answer_id": "..."}   console.py; the conversation page's "Right answer"
"""

from __future__ import annotations

from typing import Any

from .answer_bank import AnswerBank
from .answer_edits import working_bank
from .choices import well_formed
from .errors import InputError, NotFound
from .implicit import TurnsAndSignals
from .log import LABEL, Signal
from .parts import Parts


def label_turn(parts: Parts, turn_id: Any, body: Any) -> dict[str, Any]:
    """The console's "Right answer": `body` is {"answer_id": ...}, checked against the working bank; the recorded
    signal as JSON.

    Raises:
        InputError: a body that is not {"answer_id": "<id>"}, and whatever `record_label` refuses.
        NotFound: no turn has that id.
    """
    if not isinstance(body, dict) or set(body) != {"answer_id"}:
        raise InputError('a label is a JSON object {"answer_id": "<answer id>"} and nothing else')
    bank, _ = working_bank(parts.config, parts.log)
    return record_label(parts.log, bank, turn_id, body["answer_id"]).to_dict()


def record_label(log: TurnsAndSignals, bank: AnswerBank, turn_id: Any, answer_id: Any) -> Signal:
    """Record that answer `answer_id` of `bank` was the right one for turn `turn_id`.

    Raises:
        InputError: a malformed turn or answer id, or an answer `bank` does not hold; nothing written.
        NotFound: no turn has that id.
    """
    malformed = well_formed(turn_id, answer_id, what="label")
    if malformed:
        raise InputError(malformed)
    turn = log.turn(turn_id)
    if turn is None:
        raise NotFound(f"there is no answer with id {turn_id!r}")
    if answer_id not in bank.ids:
        raise InputError(f"there is no answer {answer_id!r} in the answer bank")
    return log.record_signal(turn.id, turn.sender_id, LABEL, answer_id)
