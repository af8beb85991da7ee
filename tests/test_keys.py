"""Resume and cache keys cover every input: a checkpoint changed in place (weights, config.json or
tokenizer), facts changed in place, or an original changed under an unlearned checkpoint is redone."""

import json
import shutil

from forensics.attacks.relearn import RelearnSettings, relearn
from forensics.cli import main
from forensics.facts.core import load_jsonl, select
from forensics.models.checkpoint import load_checkpoint, read_json
from forensics.models.digest import checkpoint_digest
from forensics.models.scoring import score
from forensics.unlearn.run import UnlearnSettings, unlearn
from tests.conftest import accuracy_study

SPLITS = ["forget_0", "forget_1", "forget_2"]


def edit_json(path, **changes):
    data = read_json(path)
    data.update(changes)
    path.write_text(json.dumps(data))


def test_digest_covers_weights_config_and_tokenizer_not_the_path(ckpts, tmp_path_factory):
    path = ckpts / "original"
    digest = checkpoint_digest(path)
    copy = tmp_path_factory.mktemp("copy") / "original"
    shutil.copytree(path, copy)
    assert checkpoint_digest(copy) == digest
    edit_json(copy / "config.json", rms_norm_eps=0.5)
    after_config = checkpoint_digest(copy)
    assert after_config != digest
    tok = read_json(copy / "tokenizer.json")
    vocab = tok["model"]["vocab"]
    a, b = sorted(vocab)[10:12]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (copy / "tokenizer.json").write_text(json.dumps(tok))
    assert checkpoint_digest(copy) not in (digest, after_config)
    shutil.copy(ckpts / "never_learned/model.safetensors", copy / "model.safetensors")
    assert checkpoint_digest(copy) != digest


def rtt(ckpts, sets):
    models = {"original": ckpts / "original", "m": ckpts / "never_learned"}
    return relearn(
        models,
        sets,
        ckpts / "out",
        RelearnSettings(lrs=(1e-3,), epochs=1, seeds=(0,), extend_rounds=0),
        SPLITS[:1],
        False,
    )


def test_rtt_redoes_runs_of_a_checkpoint_replaced_in_place(ckpts):
    sets = select(load_jsonl(ckpts / "facts.jsonl"), SPLITS, ["retain"])
    rtt(ckpts, sets)
    file = ckpts / "out/relearn/m/forget_0_lr0.001_e1_s0.json"
    first = read_json(file)
    reference = ckpts / "out/relearn/original/forget_0_lr0.001_e1_s0.json"
    stamp = reference.stat().st_mtime_ns
    shutil.copy(ckpts / "original/model.safetensors", ckpts / "never_learned/model.safetensors")
    again = rtt(ckpts, sets)
    second = read_json(file)
    assert second["key"] != first["key"]
    model, tok = load_checkpoint(ckpts / "never_learned")
    fresh = score(model, tok, list(sets.forget["forget_0"])).accuracy
    assert second["run"]["before"]["acc_v"] == fresh == again["best"]["m"]["forget_0"]["before"]
    assert reference.stat().st_mtime_ns == stamp  # the original's run was not redone


def test_rtt_redoes_runs_when_the_facts_change_in_place(ckpts):
    facts = ckpts / "facts.jsonl"
    rtt(ckpts, select(load_jsonl(facts), SPLITS, ["retain"]))
    file = ckpts / "out/relearn/original/forget_0_lr0.001_e1_s0.json"
    first = read_json(file)
    lines = [json.loads(x) for x in facts.read_text().splitlines()]
    v = next(r for r in lines if r["split"] == "forget_0")
    v["answer"] = (v["answer"] + 1) % len(v["choices"])  # the answer moved: V is a different question
    facts.write_text("".join(json.dumps(r) + "\n" for r in lines))
    sets = select(load_jsonl(facts), SPLITS, ["retain"])
    rtt(ckpts, sets)
    second = read_json(file)
    assert second["key"] != first["key"]
    model, tok = load_checkpoint(ckpts / "original")
    assert second["run"]["before"]["acc_v"] == score(model, tok, list(sets.forget["forget_0"])).accuracy


def test_unlearn_redoes_when_the_original_changed(ckpts):
    sets = select(load_jsonl(ckpts / "facts.jsonl"), SPLITS, ["retain"])
    settings = UnlearnSettings(batch_size=16, budget=1, lrs=(1e-3,), steps=2)
    out = ckpts / "gd"
    first = unlearn("gd", ckpts / "original", sets, out, settings, progress=False)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert unlearn("gd", ckpts / "original", sets, out, settings, progress=False) == first
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    shutil.copy(ckpts / "never_learned/model.safetensors", ckpts / "original/model.safetensors")
    second = unlearn("gd", ckpts / "original", sets, out, settings, progress=False)
    assert second["request"]["original"] != first["request"]["original"]
    assert (out / "model.safetensors").stat().st_mtime_ns != stamp


def test_study_recomputes_a_stage_after_config_json_changed(ckpts, capsys):
    config = accuracy_study(ckpts)
    assert main(["study", str(config), "--quiet"]) == 0
    assert main(["study", str(config), "--quiet"]) == 0
    assert read_json(ckpts / "out/results.json")["timings"]["accuracy"]["resumed"]
    edit_json(ckpts / "never_learned/config.json", rms_norm_eps=10.0)
    assert main(["study", str(config), "--quiet"]) == 0
    results = read_json(ckpts / "out/results.json")
    assert not results["timings"]["accuracy"]["resumed"]
    model, tok = load_checkpoint(ckpts / "never_learned")
    sets = select(load_jsonl(ckpts / "facts.jsonl"), SPLITS, ["retain"])
    assert results["accuracy"]["m"]["retain"] == score(model, tok, sets.retain).accuracy


def test_a_corrupt_run_file_is_redone_with_a_warning(ckpts, capsys):
    sets = select(load_jsonl(ckpts / "facts.jsonl"), SPLITS, ["retain"])
    first = rtt(ckpts, sets)
    file = ckpts / "out/relearn/m/forget_0_lr0.001_e1_s0.json"
    file.write_text('{"key": ')
    again = rtt(ckpts, sets)
    assert "unreadable RTT run, redoing it" in capsys.readouterr().err
    assert again["best"] == first["best"]  # seeded: the redone run is the same run
    assert read_json(file)["run"]["v"] == "forget_0"


def test_a_corrupt_stage_file_is_recomputed_with_a_warning(ckpts, capsys):
    config = accuracy_study(ckpts)
    assert main(["study", str(config), "--quiet"]) == 0
    first = read_json(ckpts / "out/results.json")["accuracy"]
    (ckpts / "out/stages/accuracy.json").write_text("{truncated")
    assert main(["study", str(config), "--quiet"]) == 0
    assert "unreadable stage result, recomputing" in capsys.readouterr().err
    results = read_json(ckpts / "out/results.json")
    assert not results["timings"]["accuracy"]["resumed"] and results["accuracy"] == first
