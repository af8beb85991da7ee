"""Scorers on a hand-built model whose answers are known, and against an unbatched reference."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from forensics.errors import InputError
from forensics.facts.core import Fact
from forensics.facts.formats import choice_context, letter_prompt
from forensics.models.checkpoint import load_checkpoint
from forensics.models.scoring import choice_logliks, choice_plan, letter_predictions, score
from forensics.worlds.world import load_world

YEARS = ["1901", "1902", "1903", "1904", "1905", "1906"]
PREFERENCE = {"1901": 0.0, "1902": 3.0, "1903": 1.0, "1904": 5.0, "1905": 2.0, "1906": 4.0}


def bigram_model():
    """A Llama whose blocks add nothing, so the next-token logits depend on the current token only.

    With one-hot embeddings the logits after token j are column j of lm_head (times the RMS norm
    scale): we write the preferences we want after "Answer:" into that column.
    """
    vocab = [
        "<pad>",
        "<unk>",
        "When",
        "was",
        "Ann",
        "Bob",
        "Cy",
        "born?",
        "Answer:",
        "A",
        "B",
        "C",
        "D",
        "A.",
        "B.",
        "C.",
        "D.",
        *YEARS,
        "<spare>",
    ]  # even width for RoPE
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    n = len(vocab)
    cfg = LlamaConfig(
        vocab_size=n,
        hidden_size=n,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        tie_word_embeddings=False,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(n))
        model.model.layers[0].self_attn.o_proj.weight.zero_()
        model.model.layers[0].mlp.down_proj.weight.zero_()
        head = torch.zeros(n, n)
        answer = vocab.index("Answer:")
        for year, p in PREFERENCE.items():
            head[vocab.index(year), answer] = p
        for letter, p in {"A": 1.0, "B": 0.0, "C": 3.0, "D": 2.0}.items():
            head[vocab.index(letter), answer] = p
        model.lm_head.weight.copy_(head)
    return model, tokenizer


def fact(name, choices, answer):
    return Fact(question=f"When was {name} born?", choices=tuple(choices), answer=answer, split="s")


def test_choice_scorer_picks_the_preferred_year():
    model, tok = bigram_model()
    facts = [
        fact("Ann", ["1901", "1902", "1903", "1904"], 3),  # 1904 preferred: right
        fact("Bob", ["1901", "1903", "1905", "1906"], 0),  # 1906 preferred: wrong
        fact("Cy", ["1902", "1905"], 0),
    ]  # two choices, 1902 preferred: right
    s = score(model, tok, facts, "choice", batch_size=2)
    assert s.predicted.tolist() == [3, 3, 0]
    assert s.correct.tolist() == [True, False, True]
    assert s.accuracy == pytest.approx(2 / 3)
    assert s.chance == pytest.approx((0.25 + 0.25 + 0.5) / 3)


def test_letter_scorer_reads_the_letter_logits():
    model, tok = bigram_model()
    facts = [
        fact("Ann", ["1901", "1902", "1903", "1904"], 2),  # C preferred: right
        fact("Bob", ["1901", "1903", "1905", "1906"], 0),  # C: wrong
        fact("Cy", ["1902", "1905"], 0),
    ]  # only A, B offered: A preferred, right
    s = score(model, tok, facts, "letter")
    assert s.predicted.tolist() == [2, 2, 0]
    assert s.correct.tolist() == [True, False, True]


def test_letter_calibration_by_hand():
    logits = np.array([[2.0, 1.0], [3.0, 0.0], [2.5, 2.6]])
    assert letter_predictions(logits).tolist() == [0, 0, 1]
    # column means (2.5, 1.2): calibrated rows (-.5, -.2), (.5, -1.2), (0, 1.4)
    assert letter_predictions(logits, calibrated=True).tolist() == [1, 0, 1]
    ragged = np.array([[0.0, 1.0, np.nan], [0.0, 1.0, 5.0]])
    assert letter_predictions(ragged).tolist() == [1, 2]


def test_unknown_scorer_and_bad_letters():
    model, tok = bigram_model()
    with pytest.raises(InputError, match="unknown scorer 'bogus'"):
        score(model, tok, [fact("Ann", YEARS[:4], 0)], "bogus")
    with pytest.raises(InputError, match="no facts"):
        score(model, tok, [], "choice")


def reference_logliks(model, tok, f):
    """One unpadded forward per choice, summing log-probs by hand."""
    totals = []
    for c in f.choices:
        head = tok(choice_context(f))["input_ids"]
        ids = head + tok(" " + c, add_special_tokens=False)["input_ids"]
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        totals.append(sum(float(logp[t - 1, ids[t]]) for t in range(len(head), len(ids))))
    return totals


def reference_choice(model, tok, f):
    return int(np.argmax(reference_logliks(model, tok, f)))


def char_tokenizer():
    """A tokenizer that writes every character as its own token (as many write digits)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789 ?:\n"))
    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(["<unk>", *chars])}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def test_shared_prefix_choices_share_a_row():
    """Years written digit by digit: " 1994" … " 1997" share all but their last token, so one row
    gives all four; crossing a decade (" 1998" … " 2001") takes two rows, one per shared prefix."""
    tok = char_tokenizer()
    facts = [
        Fact("q?", ("1994", "1995", "1996", "1997"), 0, "s"),
        Fact("r?", ("1998", "1999", "2000", "2001"), 0, "s"),
    ]
    plan = choice_plan(tok, facts)
    assert len(plan.rows) == 3 and not plan.first and len(plan.long) == 8
    assert len(plan.terms) == 8 * 5  # " " and four digits per choice, each read from a shared row


def test_choice_plan_logliks_equal_one_row_per_choice(micro_world):
    """One-token choices read at the prompt's last position, longer ones from shared rows: the
    same log-likelihoods as one unpadded row per choice, for a mix of both kinds in one fact."""
    _, sets = load_world(micro_world)
    model, tok = load_checkpoint(micro_world / "checkpoints/original")
    facts = sets.forget_facts()[:6]
    mixed = Fact(
        facts[0].question, (facts[0].choices[0], "Teiduk Breipoul", "B", "C"), 0, "s"
    )  # " B": one token
    facts = [*facts, mixed]
    plan = choice_plan(tok, facts)
    facts += [Fact("Single?", ("B", "C", "A"), 1, "s")]  # every choice one token: its prompt alone
    plan = choice_plan(tok, facts)
    assert plan.first and plan.long and len(plan.rows) < len(plan.long)  # both paths, rows shared
    got = choice_logliks(model, tok, facts, batch_size=3)
    with torch.no_grad():
        for f, row in zip(facts, got, strict=True):
            np.testing.assert_allclose(row[: len(f.choices)], reference_logliks(model, tok, f), atol=1e-4)


def test_batched_scores_equal_unbatched_reference(micro_world):
    world, sets = load_world(micro_world)
    model, tok = load_checkpoint(micro_world / "checkpoints/never_learned")
    facts = sets.forget_facts() + list(sets.retain)[:6]
    s = score(model, tok, facts, "choice", batch_size=5)
    with torch.no_grad():
        assert s.predicted.tolist() == [reference_choice(model, tok, f) for f in facts]
        letters = [tok(f" {x}", add_special_tokens=False)["input_ids"][0] for x in "ABCD"]
        expected = [
            int(
                torch.argmax(model(torch.tensor([tok(letter_prompt(f))["input_ids"]])).logits[0, -1, letters])
            )
            for f in facts
        ]
    assert score(model, tok, facts, "letter", batch_size=3).predicted.tolist() == expected


def test_a_prefix_every_row_shares_runs_once_with_the_same_logliks(micro_world):
    """In-context prompts (demonstrations + question) share a long first part: it runs once, its
    keys and values repeated for the rows, and every choice's log-likelihood is the unbatched one."""
    from forensics.lenses.incontext import demonstrations, primed

    world, sets = load_world(micro_world)
    model, tok = load_checkpoint(micro_world / "checkpoints/original")
    v, t, v_facts = next(iter(sets.rotations()))
    facts = primed([*v_facts, *list(sets.retain)[:3]], demonstrations(t, world["scorer"], 4, 0))
    calls = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: calls.append((len(args[0]), kwargs.get("cache"))), with_kwargs=True
    )
    try:
        got = choice_logliks(model, tok, facts, batch_size=4)
    finally:
        hook.remove()
    assert any(rows > 1 and cache is not None for rows, cache in calls)  # the rows after the prefix's run
    with torch.no_grad():
        for f, row in zip(facts, got, strict=True):
            np.testing.assert_allclose(row[: len(f.choices)], reference_logliks(model, tok, f), atol=1e-4)
    assert score(model, tok, facts).predicted.tolist() == [int(np.argmax(r)) for r in got]
