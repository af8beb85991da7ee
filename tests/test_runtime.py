"""Devices, dtypes and accelerate's device_map: errors at once, the checkpoint's own dtype, and a
model split between CPU memory and disk giving the same activations, scores and patches."""

import shutil

import pytest
import torch

from forensics.attacks.quantize import quantize_attack
from forensics.attacks.relearn import RelearnSettings, run_one
from forensics.cli import build_parser, main
from forensics.errors import InputError
from forensics.facts.formats import choice_context
from forensics.measure.localize import patch, revert
from forensics.models.cache import extract
from forensics.models.checkpoint import boot_bridge, load_checkpoint
from forensics.models.runtime import Runtime, input_device, torch_device
from forensics.models.scoring import score
from forensics.worlds.world import load_world
from tests.conftest import accuracy_study

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_cuda_where_there_is_none_fails_at_once(micro_world, tmp_path, capsys):
    with pytest.raises(InputError, match="no CUDA device"):
        torch_device("cuda:1")
    assert torch_device("auto").type == "cpu"
    with pytest.raises(InputError, match="choose auto, cpu, cuda"):
        Runtime(device="gpu")
    # a study asked for cuda: one line, exit 2, before any stage ran
    shutil.copytree(micro_world / "checkpoints", tmp_path, dirs_exist_ok=True)
    shutil.copy(micro_world / "facts.jsonl", tmp_path)
    config = accuracy_study(tmp_path)
    config.write_text('device = "cuda"\n' + config.read_text())
    assert main(["study", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0] and str(config) in err[0]
    assert not (tmp_path / "out").exists()
    # the same from the command line over a config that says cpu
    config.write_text(config.read_text().replace('device = "cuda"', 'device = "cpu"'))
    assert main(["study", str(config), "--quiet", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"dtype": "fp8"}, "'dtype' fp8"),
        ({"device_map": "balanced"}, "'device_map' balanced"),
        ({"max_memory": {"cpu": "1GiB"}}, "needs device_map"),
        ({"device_map": "auto", "max_memory": {"gpu0": "1GiB"}}, "key 'gpu0'"),
        ({"device_map": "auto", "max_memory": {"cpu": "lots"}}, "an amount like"),
    ],
)
def test_bad_runtime_settings(bad, message):
    with pytest.raises(InputError, match=message):
        Runtime(**bad)


def test_every_model_command_takes_device_and_dtype():
    parser = build_parser()
    commands = {
        "score": ["ckpt", "--facts", "f"],
        "unlearn": ["--method", "gd", "--world", "w"],
        "relearn": ["--world", "w"],
        "attack": ["--world", "w"],
        "probe": ["--world", "w"],
        "localize": ["--world", "w"],
        "study": ["s.toml"],
        "demo": [],
        "world": ["--out", "w"],
        "validate": ["--world", "w"],
    }
    for command, args in commands.items():
        a = parser.parse_args([command, *args, "--device", "cpu", "--dtype", "bfloat16"])
        assert (a.device, a.dtype) == ("cpu", "bfloat16"), command


def test_dtype_auto_is_the_checkpoints_own(micro_world, tmp_path):
    model, tok = load_checkpoint(micro_world / "checkpoints/original", Runtime(dtype="bfloat16"))
    assert next(model.parameters()).dtype == torch.bfloat16
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert next(load_checkpoint(tmp_path)[0].parameters()).dtype == torch.bfloat16  # auto
    as_float = load_checkpoint(tmp_path, Runtime(dtype="float32"))[0]
    assert next(as_float.parameters()).dtype == torch.float32


def test_offloaded_model_gives_the_same_activations_scores_and_patches(micro_world):
    """device_map="auto" with a CPU budget smaller than the model: some blocks live on disk and are
    loaded by accelerate's hooks during the forward. The cache, the scorer and patching (two models,
    one split) give what the model in memory gives."""
    _, sets = load_world(micro_world)
    path = micro_world / "checkpoints/original"
    whole, tok = load_checkpoint(path, Runtime(device="cpu"))
    size = sum(p.numel() * p.element_size() for p in whole.parameters())
    memory = {"cpu": f"{size * 9 // 10240}KB"}
    split, _ = load_checkpoint(path, Runtime(device_map="auto", max_memory=memory))
    assert {"cpu", "disk"} <= set(split.hf_device_map.values())
    assert input_device(split).type == "cpu"
    facts = [*sets.forget_facts(), *sets.retain]
    assert score(split, tok, facts).correct.tolist() == score(whole, tok, facts).correct.tolist()
    prompts = [choice_context(f) for f in facts]
    a, b = boot_bridge(path, split, tok), boot_bridge(path, whole, tok)
    ea, eb = extract(a, prompts), extract(b, prompts)
    for hook in ea.hooks:
        torch.testing.assert_close(ea[hook], eb[hook], atol=1e-5, rtol=0)
    never, _ = load_checkpoint(micro_world / "checkpoints/never_learned", Runtime(device="cpu"))
    target = boot_bridge(micro_world / "checkpoints/never_learned", never, tok)
    assert patch(a, target, sets, "choice") == patch(b, target, sets, "choice")
    # lenses that edit or copy weights refuse disk-offloaded ones in one line
    with pytest.raises(InputError, match="reverting a layer changes the model's weights"):
        revert(whole, split, tok, sets, "choice")
    with pytest.raises(InputError, match="full RTT changes"):
        run_one(split, tok, sets, "forget_0", 1e-3, RelearnSettings(epochs=1), 0.0, False)
    with pytest.raises(InputError, match="quantization attack changes"):
        quantize_attack({"original": path}, sets, runtime=Runtime(device_map="auto", max_memory=memory))
    with pytest.raises(InputError, match="nothing of the model in memory"):
        load_checkpoint(path, Runtime(device_map="auto", max_memory={"cpu": "1KB"}))


def test_nf4_needs_cuda():
    with pytest.raises(InputError, match="nf4 quantization .* needs a CUDA device"):
        Runtime(device="cpu", quantize="nf4")
    with pytest.raises(InputError, match="only nf4"):
        Runtime(device="cpu", quantize="int3")


def test_an_unlearned_checkpoint_keeps_the_originals_dtype(micro_world, tmp_path):
    """A bf16 original is loaded as bf16 (dtype auto) and its unlearned copy is saved as bf16: the
    same bytes on disk, not a float32 copy twice the size."""
    from forensics.unlearn.run import UnlearnSettings, unlearn

    _, sets = load_world(micro_world)
    model, tok = load_checkpoint(micro_world / "checkpoints/original", Runtime(dtype="bfloat16"))
    model.save_pretrained(tmp_path / "original")
    tok.save_pretrained(tmp_path / "original")
    settings = UnlearnSettings(batch_size=16, budget=1, lrs=(1e-3,), steps=5)
    unlearn("gd", tmp_path / "original", sets, tmp_path / "gd", settings, progress=False)
    assert next(load_checkpoint(tmp_path / "gd")[0].parameters()).dtype == torch.bfloat16

    def size(path):
        return sum(f.stat().st_size for f in path.glob("*.safetensors"))

    assert size(tmp_path / "gd") == size(tmp_path / "original")


def test_nan_in_an_offloaded_tensor_is_refused(micro_world, tmp_path):
    """Weights in memory are checked as loaded; weights accelerate left on disk are read from the
    safetensors and checked there: an Inf in the head (offloaded here) is still one line."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(micro_world / "checkpoints/original", tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    tensors = load_file(weights)
    tensors["lm_head.weight"][0, 0] = float("inf")
    save_file(tensors, weights, metadata={"format": "pt"})
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    runtime = Runtime(device_map="auto", max_memory={"cpu": f"{size * 9 // 10240}KB"})
    clean, _ = load_checkpoint(micro_world / "checkpoints/original", runtime)
    assert clean.hf_device_map["lm_head"] == "disk"  # the check below reads it from the file
    with pytest.raises(InputError, match="tensor 'lm_head.weight' holds NaN or Inf"):
        load_checkpoint(tmp_path / "m", runtime)
