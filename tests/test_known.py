"""The known-fact rule on the micro world: the original knows its forget facts in both formats, the
never-learned model passes both on few of them (guesses), and the cloze is built from the fact's own
statement."""

from dataclasses import replace

from forensics.facts.core import Fact
from forensics.models.checkpoint import load_checkpoint
from forensics.worlds.known import cloze, knowledge
from forensics.worlds.world import load_world


def test_cloze_takes_the_statement_with_the_most_context_before_the_answer():
    fact = Fact(
        "When?",
        ("1968", "1969", "1970", "1971"),
        1,
        "s",
        statements=("In 1969, men landed on the Moon.", "Men landed on the Moon in 1969.", "1969: Moon."),
    )
    head, tails = cloze(fact)
    assert head == "Men landed on the Moon in" and tails == [" 1968.", " 1969.", " 1970.", " 1971."]
    assert cloze(Fact("When?", ("1", "2"), 0, "s", statements=("1 is first.", "It says 11."))) is None


def test_the_rule_on_the_micro_world(micro_world):
    _, sets = load_world(micro_world)
    facts = sets.forget_facts()
    original = knowledge(*load_checkpoint(micro_world / "checkpoints/original"), facts)
    never = knowledge(*load_checkpoint(micro_world / "checkpoints/never_learned"), facts)
    n = len(facts)
    assert original["counts"]["usable"] == n  # every world fact states its year after its name
    assert original["counts"]["known"] >= 0.9 * n and original["counts"]["unknown"] == 0
    # the never-learned model guesses: right in both formats on few facts, wrong in both on many
    assert never["counts"]["known"] <= 0.35 * n and never["counts"]["unknown"] >= 0.3 * n
    assert never["expected_lucky_known"] > 0 and original["expected_lucky_known"] < 1
    for result in (original, never):
        for q, c, k, u in zip(
            result["question"], result["cloze"], result["known"], result["unknown"], strict=True
        ):
            assert k == (q and c) and u == (not q and not c)


def test_a_real_world_is_keyed_on_the_data_it_reads_not_how_it_was_named(micro_world, paper_data, tmp_path):
    """`forensics real` and `forensics real --data <the default folder>` reuse one world (the first
    form named the data None, the second by its path: the key held both and rebuilt 30 minutes of
    world); another folder, other settings or other weights are another world."""
    from forensics.worlds.real import RealConfig, world_request

    base = micro_world / "checkpoints/original"
    cfg = RealConfig()  # data None: the default folder, here the one the tests read
    same = world_request(cfg, base, paper_data)
    assert world_request(replace(cfg, data=str(paper_data)), base, paper_data) == same
    (tmp_path / "link").symlink_to(paper_data)
    assert world_request(replace(cfg, data=str(tmp_path / "link")), base, tmp_path / "link") == same
    other = tmp_path / "copy"
    for part in ("years", "random-birthdays"):
        (other / part).mkdir(parents=True)
    assert world_request(cfg, base, other) != same
    assert world_request(replace(cfg, per_split=5), base, paper_data) != same
    assert world_request(cfg, micro_world / "checkpoints/never_learned", paper_data) != same


def test_a_real_world_on_a_micro_base_chooses_its_control_on_the_implanted_original(
    micro_world, paper_data, tmp_path
):
    """`build_real_world` end to end on a micro model as the base: the known splits are known to the
    base, and the control facts are facts the base did not know that the implanted original still gets
    wrong under the cloze (chosen after the implant: the question stays free for the reference check)."""
    from forensics.facts.load import load_facts
    from forensics.models.checkpoint import load_checkpoint
    from forensics.unlearn.run import UnlearnSettings, run_steps
    from forensics.worlds.known import knowledge
    from forensics.worlds.real import RealConfig, build_real_world

    base = micro_world / "checkpoints" / "never_learned"
    cfg = RealConfig(
        model=str(base),
        data=str(paper_data),
        forget_splits=4,
        per_split=2,
        retain=2,
        near=2,
        implant_epochs=1,
    )
    world = build_real_world(tmp_path / "real", cfg, progress=False)
    facts = load_facts(tmp_path / "real" / "facts.jsonl")
    control = facts.facts([f"pretrained_control_{i}" for i in range(4)])
    known = facts.facts([*(f"pretrained_{i}" for i in range(4)), "pretrained_retain"])
    assert len(control) == world["known_facts"]["control"]["used"] == 8 and len(known) == 10
    on_base = knowledge(*load_checkpoint(base), [*known, *control])
    assert all(on_base["known"][:10]) and all(on_base["unknown"][10:])
    original = load_checkpoint(tmp_path / "real" / world["models"]["original"]["path"])
    on_original = knowledge(*original, control)
    assert on_original["cloze"] == [False] * 8
    accuracy = world["known_facts"]["control"]["question_accuracy_on_original"]
    assert abs(accuracy - sum(on_original["question"]) / 8) < 1e-9
    assert {"known facts", "control facts", "implant original"} <= set(world["stages"])
    # `forensics real`'s unlearning steps: GD's 2.5 passes over a kind's 8 forget facts at a batch of
    # 8 (or 2), RMU's 5; a given number of steps overrides both
    _, sets = load_world(tmp_path / "real", "pretrained")
    real = UnlearnSettings(start="REAL", batch_size=8)
    assert run_steps("gd", real, sets) == 3 and run_steps("rmu", real, sets) == 5
    assert run_steps("gd", replace(real, batch_size=2), sets) == 10
    assert run_steps("rmu", replace(real, steps=7), sets) == 7
    assert run_steps("gd", UnlearnSettings(), sets) == 60
