"""Zero-shot multiple-choice accuracy with the two scorers of DESIGN §1.

- `letter`: argmax of the last prompt position's logits restricted to the choice letters (the
  paper's scorer); `letter_calibrated` first subtracts each letter's mean logit over the eval set.
- `choice`: the summed log-likelihood of each choice as a continuation of the question.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from forensics.errors import InputError
from forensics.facts import Fact, Sets
from forensics.formats import choice_context, choice_continuation, letter_prompt, letter_target
from forensics.tokens import collate, encode, encode_tails, logits_of, pad_id, sequence_nll
from forensics.verdict import bits

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
    """The sequences the `choice` scorer runs. Each fact's prompt runs once: its last position gives
    the log-likelihood of every one-token choice (causal attention: the same number as on the prompt
    + choice row). Longer choices run as prompt + choice rows of their own. On one-word answers this
    is a fraction of one row per choice, with the same log-likelihoods."""

    prompts: list[list[int]]  # one per fact
    first: list[tuple[int, int, int]]  # (fact, choice, token) of every one-token choice
    long: list[tuple[int, int]]  # (fact, choice) of every longer choice, in `rows` order
    rows: list[tuple[list[int], int]]  # (prompt + choice ids, prompt length) per long choice
    width: int  # most choices of a fact


def choice_plan(tokenizer, facts: Sequence[Fact]) -> ChoicePlan:
    """The plan for `facts` (kept for the last few fact lists: RTT and localization score the same
    facts again and again)."""
    return _plan(tokenizer, tuple(facts))


@functools.lru_cache(maxsize=16)
def _plan(tokenizer, facts: tuple[Fact, ...]) -> ChoicePlan:
    prompts, first, long, rows = [], [], [], []
    for i, f in enumerate(facts):
        prompt, tails = encode_tails(
            tokenizer, choice_context(f), [choice_continuation(c) for c in f.choices]
        )
        prompts.append(prompt)
        for j, tail in enumerate(tails):
            if len(tail) == 1:
                first.append((i, j, tail[0]))
            else:
                long.append((i, j))
                rows.append((prompt + tail, len(prompt)))
    return ChoicePlan(prompts, first, long, rows, max(len(f.choices) for f in facts))


def plan_table(plan: ChoicePlan, first_logp: torch.Tensor, long_ll: torch.Tensor) -> torch.Tensor:
    """[..., facts, width] log-likelihoods (-inf pads) from the prompts' last-position log-probs
    [..., facts, vocab] and the long rows' summed log-likelihoods [..., rows]."""
    table = torch.full((*first_logp.shape[:-1], plan.width), -torch.inf, dtype=first_logp.dtype)
    if plan.first:
        i, j, t = (torch.tensor(c) for c in zip(*plan.first, strict=True))
        table[..., i, j] = first_logp[..., i, t]
    if plan.long:
        i, j = (torch.tensor(c) for c in zip(*plan.long, strict=True))
        table[..., i, j] = long_ll.to(table.dtype)
    return table


@torch.no_grad()
def choice_logliks(model, tokenizer, facts: Sequence[Fact], batch_size: int = 64) -> np.ndarray:
    """Summed log-likelihood of every choice given its question, [n_facts, max choices] (-inf pads)."""
    plan = choice_plan(tokenizer, facts)
    device = next(model.parameters()).device
    pad = pad_id(tokenizer)
    needed = sorted({t for _, _, t in plan.first})
    first = torch.zeros(len(facts), max(needed, default=0) + 1)
    for idx, chunk in _batches([(p, len(p)) for p in plan.prompts], batch_size):
        batch = collate(chunk, pad, device)
        last = batch["attention_mask"].sum(1) - 1
        logits = logits_of(model, batch)[torch.arange(len(idx)), last].float()
        first[idx] = torch.log_softmax(logits, -1)[:, : first.shape[1]].cpu()
    long = torch.zeros(len(plan.rows))
    for idx, chunk in _batches(plan.rows, batch_size):
        batch = collate(chunk, pad, device)
        long[idx] = -sequence_nll(logits_of(model, batch), batch["labels"])[0].cpu()
    return plan_table(plan, first, long).double().numpy()


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
    return table
