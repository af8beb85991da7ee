"""Zero-shot multiple-choice accuracy with the two scorers of docs/design.md §1.

- `letter`: argmax of the last prompt position's logits restricted to the choice letters (the
  paper's scorer); `letter_calibrated` first subtracts each letter's mean logit over the eval set.
- `choice`: the summed log-likelihood of each choice as a continuation of the question.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from forensics.errors import InputError
from forensics.facts.core import Fact, Sets
from forensics.facts.formats import choice_context, choice_continuation, letter_prompt, letter_target
from forensics.models.tokens import collate, encode, encode_tails, keeps_logits, logits_of, pad_id
from forensics.outcomes import bits

SCORERS = ("letter", "letter_calibrated", "choice")


@dataclass(frozen=True)
class Scores:
    """Per-question results of one scorer on one fact list."""

    correct: np.ndarray  # bool, one per fact
    predicted: np.ndarray  # index of the chosen choice, one per fact
    chance: float  # expected accuracy of a uniform guess

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.correct) else float("nan")


def letter_predictions(logits: np.ndarray, calibrated: bool = False) -> np.ndarray:
    """Argmax over letter logits [n_facts, n_letters] (NaN where a fact has fewer choices).

    Calibration subtracts each letter's mean logit over the facts that offer that letter.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if calibrated:
        logits = logits - np.nanmean(logits, axis=0, keepdims=True)
    return np.argmax(np.where(np.isnan(logits), -np.inf, logits), axis=1)


def letter_token_ids(tokenizer, n: int) -> list[int]:
    """The single token each of the first n letters (" A", " B", …) is written with."""
    ids = []
    for i in range(n):
        toks = tokenizer(letter_target(i), add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise InputError(
                f"tokenizer splits {letter_target(i)!r} into {len(toks)} tokens; "
                "the letter scorer needs one token per letter"
            )
        ids.append(toks[0])
    return ids


def _batches(items: list, batch_size: int):
    """Length-sorted batches of (original index, item) so padding stays small."""
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, [items[i] for i in idx]


@torch.no_grad()
def letter_logits(model, tokenizer, facts: Sequence[Fact], batch_size: int = 64) -> np.ndarray:
    """Last-prompt-position logits of each fact's choice letters, NaN past its number of choices."""
    k = max(len(f.choices) for f in facts)
    letters = torch.tensor(letter_token_ids(tokenizer, k))
    items = [encode(tokenizer, letter_prompt(f), "") for f in facts]
    out = np.full((len(facts), k), np.nan)
    device = next(model.parameters()).device
    for idx, chunk in _batches(items, batch_size):
        batch = collate(chunk, pad_id(tokenizer), device)
        logits = logits_of(model, batch)
        last = batch["attention_mask"].sum(1) - 1
        rows = logits[torch.arange(len(idx)), last][:, letters.to(device)].float().cpu().numpy()
        for row, i in enumerate(idx):
            n = len(facts[i].choices)
            out[i, :n] = rows[row, :n]
    return out


@dataclass(frozen=True)
class ChoicePlan:
    """The sequences the `choice` scorer runs, each fact's choices read from as few rows as causal
    attention allows. A fact whose choices are all one token runs its prompt once: the last position
    gives every choice. Otherwise a row is the prompt + one choice, and it gives every choice whose
    tokens but the last are a prefix of that row's tail (" 1994" … " 1997" as digits share " 199": one
    row gives all four); the log-likelihoods are those of one row per choice."""

    prompts: list[list[int]]  # one per fact
    first: list[tuple[int, int, int]]  # (fact, choice, token) of every choice read from its prompt
    long: list[tuple[int, int]]  # (fact, choice) of every choice read from rows
    rows: list[tuple[list[int], int]]  # (prompt + choice ids, prompt length)
    terms: list[
        tuple[int, int, int, int]
    ]  # (long choice, row, position, token): log p(token | row[:position+1])
    width: int  # most choices of a fact

    @property
    def prompt_facts(self) -> list[int]:
        """The facts whose prompt runs on its own (every choice one token)."""
        return sorted({i for i, _, _ in self.first})


def choice_plan(tokenizer, facts: Sequence[Fact], own_rows: bool = False) -> ChoicePlan:
    """The plan for `facts` (kept for the last few fact lists: RTT and localization score the same
    facts again and again). With `own_rows`, every choice has a row of its own, one-token choices
    included: the row's last position is the whole statement, which choice-scoring probes read."""
    items = tuple((choice_context(f), tuple(choice_continuation(c) for c in f.choices)) for f in facts)
    return _plan(tokenizer, items, own_rows)


def _covers(row_tail: list[int], choice: list[int]) -> bool:
    """A row with this tail gives `choice`: all but its last token are the tail's first tokens."""
    return len(choice) <= len(row_tail) and row_tail[: len(choice) - 1] == choice[:-1]


@functools.lru_cache(maxsize=16)
def _plan(tokenizer, items: tuple[tuple[str, tuple[str, ...]], ...], own_rows: bool = False) -> ChoicePlan:
    """The plan for (context, continuations) items: each continuation scored after its context."""
    prompts, first, long, rows, terms = [], [], [], [], []
    for i, (context, continuations) in enumerate(items):
        prompt, tails = encode_tails(tokenizer, context, list(continuations))
        prompts.append(prompt)
        if not own_rows and all(len(t) == 1 for t in tails):
            first += [(i, j, t[0]) for j, t in enumerate(tails)]
            continue
        placed: dict[int, int] = {}  # choice -> row
        for j in sorted(range(len(tails)), key=lambda j: -len(tails[j])):
            if j in placed:
                continue
            rows.append((prompt + tails[j], len(prompt)))
            for k, tail in enumerate(tails):
                if k not in placed and (k == j or not own_rows and _covers(tails[j], tail)):
                    placed[k] = len(rows) - 1
        for j, tail in enumerate(tails):
            long.append((i, j))
            terms += [(len(long) - 1, placed[j], len(prompt) - 1 + n, tok) for n, tok in enumerate(tail)]
    return ChoicePlan(prompts, first, long, rows, terms, max(len(c) for _, c in items))


def plan_table(plan: ChoicePlan, first_logp: torch.Tensor, long_ll: torch.Tensor) -> torch.Tensor:
    """[..., facts, width] log-likelihoods (-inf pads) from the prompts' last-position log-probs
    [..., facts, vocab] (read only for `plan.prompt_facts`) and the long choices' summed
    log-likelihoods [..., long]."""
    table = torch.full((*first_logp.shape[:-1], plan.width), -torch.inf, dtype=first_logp.dtype)
    if plan.first:
        i, j, t = (torch.tensor(c) for c in zip(*plan.first, strict=True))
        table[..., i, j] = first_logp[..., i, t]
    if plan.long:
        i, j = (torch.tensor(c) for c in zip(*plan.long, strict=True))
        table[..., i, j] = long_ll.to(table.dtype)
    return table


def long_logliks(plan: ChoicePlan, term_logp: torch.Tensor) -> torch.Tensor:
    """[..., long] summed log-likelihood of each long choice from its terms' log-probs [..., terms]."""
    index = torch.tensor([t[0] for t in plan.terms], dtype=torch.long)
    out = torch.zeros((*term_logp.shape[:-1], len(plan.long)), dtype=term_logp.dtype)
    return out.index_add_(-1, index, term_logp)


SHARED_PREFIX = 32  # tokens every row of a batch must share before they are run once (in-context demos)


def _shared_prefix(ids: torch.Tensor, start: int) -> int:
    """How many first tokens every row of `ids` shares, at most `start` (the first position read)."""
    same = (ids == ids[:1]).all(0)
    n = int(same.long().cumprod(0).sum())
    return min(n, start)


def _positions_logits(model, batch: dict[str, torch.Tensor], start: int) -> tuple[torch.Tensor, int]:
    """Logits of a batch from position `start` on, and the offset of the first one. The unembedding
    is skipped for earlier positions where the model supports it (most of a row is its prompt), and
    a prefix every row shares (in-context demonstrations) runs once, its keys and values repeated
    for the rows: causal attention makes this the same computation."""
    if not keeps_logits(model):
        return logits_of(model, batch), 0
    params = inspect.signature(model.forward).parameters
    ids, mask = batch["input_ids"], batch["attention_mask"]
    name = next((n for n in ("cache", "past_key_values") if n in params), None)  # transformers 5 / 4
    shared = _shared_prefix(ids, start) if len(ids) > 1 and name else 0
    if shared < SHARED_PREFIX:
        keep = torch.arange(start, ids.shape[1], device=ids.device)
        return logits_of(model, batch, logits_to_keep=keep), start
    head = model(ids[:1, :shared], attention_mask=mask[:1, :shared], use_cache=True)
    cache = head[name]  # the output names it as the forward's argument does
    cache.batch_repeat_interleave(len(ids))
    keep = torch.arange(start - shared, ids.shape[1] - shared, device=ids.device)
    rest = {"input_ids": ids[:, shared:], "attention_mask": mask}
    return logits_of(model, rest, **{name: cache}, logits_to_keep=keep), start


@torch.no_grad()
def choice_logliks(model, tokenizer, facts: Sequence[Fact], batch_size: int = 64) -> np.ndarray:
    """Summed log-likelihood of every choice given its question, [n_facts, max choices] (-inf pads)."""
    return plan_logliks(model, tokenizer, choice_plan(tokenizer, facts), batch_size)


@torch.no_grad()
def continuation_logliks(
    model, tokenizer, items: Sequence[tuple[str, Sequence[str]]], batch_size: int = 64
) -> np.ndarray:
    """Summed log-likelihood of each continuation after its context, [items, most continuations]
    (-inf pads): any format beside the question (a corpus statement with each year in its place)."""
    plan = _plan(tokenizer, tuple((c, tuple(ts)) for c, ts in items))
    return plan_logliks(model, tokenizer, plan, batch_size)


@torch.no_grad()
def plan_logliks(model, tokenizer, plan: ChoicePlan, batch_size: int = 64) -> np.ndarray:
    """Run a plan: [items, width] log-likelihoods."""
    device = next(model.parameters()).device
    pad = pad_id(tokenizer)
    needed = sorted({t for _, _, t in plan.first})
    first = torch.zeros(len(plan.prompts), max(needed, default=0) + 1)
    ask = plan.prompt_facts
    for idx, chunk in _batches([(plan.prompts[i], len(plan.prompts[i])) for i in ask], batch_size):
        batch = collate(chunk, pad, device)
        last = batch["attention_mask"].sum(1) - 1
        logits, offset = _positions_logits(model, batch, int(last.min()))
        logits = logits[torch.arange(len(idx)), last - offset].float()
        first[[ask[i] for i in idx]] = torch.log_softmax(logits, -1)[:, : first.shape[1]].cpu()
    by_row: dict[int, list[int]] = {}
    for n, (_, row, _, _) in enumerate(plan.terms):
        by_row.setdefault(row, []).append(n)
    term_logp = torch.zeros(len(plan.terms))
    for idx, chunk in _batches(plan.rows, batch_size):
        batch = collate(chunk, pad, device)
        start = min(n_prompt for _, n_prompt in chunk) - 1
        logits, offset = _positions_logits(model, batch, start)
        picks = [(b, n) for b, r in enumerate(idx) for n in by_row[r]]
        b = torch.tensor([b for b, _ in picks])
        pos = torch.tensor([plan.terms[n][2] - offset for _, n in picks])
        tok = torch.tensor([plan.terms[n][3] for _, n in picks])
        logp = torch.log_softmax(logits[b.to(logits.device), pos.to(logits.device)].float(), -1)
        term_logp[[n for _, n in picks]] = logp.gather(1, tok.to(logp.device)[:, None])[:, 0].cpu()
    return plan_table(plan, first, long_logliks(plan, term_logp)).double().numpy()


def score(model, tokenizer, facts: Sequence[Fact], scorer: str = "choice", batch_size: int = 64) -> Scores:
    """Accuracy of `model` on `facts` under `scorer` (one of SCORERS), per question."""
    if scorer not in SCORERS:
        raise InputError(f"unknown scorer '{scorer}' (choose from {', '.join(SCORERS)})")
    if not facts:
        raise InputError("no facts to score")
    was_training = model.training
    if was_training:  # eval() walks every module: skipped when there is nothing to switch
        model.eval()
    try:
        if scorer == "choice":
            predicted = np.argmax(choice_logliks(model, tokenizer, facts, batch_size), axis=1)
        else:
            values = letter_logits(model, tokenizer, facts, batch_size)
            predicted = letter_predictions(values, calibrated=scorer == "letter_calibrated")
    finally:
        if was_training:
            model.train()
    answers = np.array([f.answer for f in facts])
    chance = float(np.mean([1.0 / len(f.choices) for f in facts]))
    return Scores(correct=predicted == answers, predicted=predicted, chance=chance)


def accuracy_table(model, tokenizer, sets: Sets, scorer: str, per_fact: bool = False) -> dict:
    """Accuracy on every forget split, all of forget, near-retain and retain, plus the chance level;
    with `per_fact`, also which forget facts are right (`forget_correct`, a 0/1 string)."""
    forget = score(model, tokenizer, sets.forget_facts(), scorer)
    table, start = {}, 0
    for name, facts in sets.forget.items():
        table[name] = float(forget.correct[start : start + len(facts)].mean())
        start += len(facts)
    table["forget"] = forget.accuracy
    if sets.near_retain:
        table["near_retain"] = score(model, tokenizer, sets.near_retain, scorer).accuracy
    retain = score(model, tokenizer, sets.retain, scorer)
    table["retain"] = retain.accuracy
    table["chance"] = retain.chance
    if per_fact:
        table["forget_correct"] = bits(forget.correct)
    if per_fact and sets.control:  # facts the original does not know: the control of pretrained facts
        control = score(model, tokenizer, sets.control_facts(), scorer)
        table["control"] = control.accuracy
        table["control_correct"] = bits(control.correct)
    return table
