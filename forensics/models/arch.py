"""Everything forensics knows about model architectures, in one place.

Which HF modules are the embeddings, the block list, the final norm and the unembedding, and how
the final norm computes (LayerNorm, RMSNorm, Gemma's × (1 + w), no affine at all as in OLMo) and
whether the logits are soft-capped, are read from the TransformerLens bridge's architecture adapter
for the checkpoint's config. Parameters are grouped by those module paths (the HF names), never by
class names. An architecture the adapters do not know is refused with one error saying so.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache

import torch

from forensics.errors import InputError
from probes.lens import Readout

# TransformerLens component names inside a block (and inside its attention and MLP) → module kind
PART_KINDS = {
    "ln1": "norm",
    "ln2": "norm",
    "ln1_post": "norm",
    "ln2_post": "norm",
    "attn.qkv": "attn_qkv",
    "attn.q": "attn_q",
    "attn.k": "attn_k",
    "attn.v": "attn_v",
    "attn.o": "attn_o",
    "attn.q_norm": "norm",
    "attn.k_norm": "norm",
    "mlp.gate": "mlp_gate",
    "mlp.in": "mlp_in",
    "mlp.gate_up": "mlp_in",
    "mlp.out": "mlp_out",
}
# outside the blocks
TOP_KINDS = {"embed": "embed", "pos_embed": "embed", "ln_final": "norm", "unembed": "unembed"}


class StopForward(Exception):
    """Raised by a hook once what a forward pass is run for has been read: the rest is not needed."""


@dataclass(frozen=True)
class Arch:
    """One architecture's layout, as HF module paths (e.g. GPT-2: blocks `transformer.h`, final norm
    `transformer.ln_f`, unembedding `lm_head`)."""

    name: str
    n_layers: int
    blocks: str
    final_norm: str
    unembed: str
    norm: str  # "layer", "rms" or "rms_offset"
    logit_softcap: float | None
    top: tuple[tuple[str, str], ...]  # (module path, kind) outside the blocks
    parts: tuple[tuple[str, str], ...]  # (module path inside a block, kind)
    renames: tuple[tuple[str, str], ...] = ()  # (pattern, replacement): a stored name → the module's

    def module_name(self, stored: str) -> str:
        """A tensor's name as the model's modules have it (transformers renames some stored names
        on load, e.g. GPT-NeoX's `embed_out` → `lm_head`)."""
        for pattern, replacement in self.renames:
            stored = re.sub(pattern, replacement, stored)
        return stored

    def layer_of(self, name: str) -> int | None:
        """The block a parameter belongs to, by its HF name (with or without the base model's
        prefix, or under an adapter's such as peft's `base_model.model.`)."""
        match = _block_pattern(self.blocks).search(name)
        return int(match.group(1)) if match else None

    def kind_of(self, name: str) -> tuple[int | None, str]:
        """(block or None, module kind) of a parameter, by its name in the model or in the
        safetensors; kind "other" for what the layout does not name."""
        name = self.module_name(name)
        match = _block_pattern(self.blocks).search(name)
        if match:
            rest = name[match.end() :]
            return int(match.group(1)), next((k for p, k in self.parts if _under(rest, p)), "other")
        for path, kind in self.top:
            if any(re.search(rf"(^|\.){re.escape(q)}\.", name) for q in _aliases(path)):
                return None, kind
        return None, "other"

    def block(self, model: torch.nn.Module, layer: int) -> torch.nn.Module:
        """Block `layer` of an HF model of this architecture."""
        return _module(model, self.blocks)[layer]

    def block_output(self, model: torch.nn.Module, layer: int, input_ids, attention_mask=None, rest=True):
        """(block `layer`'s output — the residual stream after it —, the model's output) of one
        forward pass; gradients flow through both. With `rest` False the pass stops at the block
        (no output: the blocks after it are not run)."""
        seen: list[torch.Tensor] = []

        def keep(_m, _i, out):
            seen.append(out[0] if isinstance(out, tuple) else out)
            if not rest:
                raise StopForward

        handle = self.block(model, layer).register_forward_hook(keep)
        try:
            out = model(input_ids, attention_mask=attention_mask)
        except StopForward:
            out = None
        finally:
            handle.remove()
        return seen[-1], out

    def block_params(self, model: torch.nn.Module, layer: int) -> dict[str, torch.nn.Parameter]:
        """The parameters of block `layer`, by their HF names."""
        return {n: p for n, p in model.named_parameters() if self.layer_of(n) == layer}

    def output_params(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """The final norm's and the unembedding's parameters (what reads the last residual out)."""
        return [*_module(model, self.final_norm).parameters(), *_module(model, self.unembed).parameters()]

    def quantizable(self, model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
        """The matrix-multiply modules of the blocks and the unembedding (nn.Linear and GPT-2's
        Conv1D, whose weight is stored transposed), by HF name."""
        from transformers.pytorch_utils import Conv1D

        return [
            (n, m)
            for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear | Conv1D)
            and (self.layer_of(n + ".") is not None or n in _aliases(self.unembed))
        ]

    def readout(self, model: torch.nn.Module) -> Readout:
        """The final norm and unembedding as tensors for `probes.lens`, checked against the model's
        own logits on one short input: at the last layer the lens must be the model's computation."""
        norm, head = _module(model, self.final_norm), _module(model, self.unembed)
        weight = getattr(norm, "weight", None)
        bias = getattr(norm, "bias", None)
        eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
        if eps is None:
            eps = next((getattr(model.config, k) for k in EPS_KEYS if hasattr(model.config, k)), 1e-5)
        readout = Readout(
            norm=self.norm,
            weight=None if weight is None else weight.detach().cpu(),
            bias=None if bias is None or self.norm != "layer" else bias.detach().cpu(),
            eps=float(eps),
            unembed=head.weight.detach().cpu(),
            unembed_bias=None if getattr(head, "bias", None) is None else head.bias.detach().cpu(),
            softcap=self.logit_softcap,
        )
        self._check(model, readout)
        return readout

    @torch.no_grad()
    def _check(self, model: torch.nn.Module, readout: Readout) -> None:
        from forensics.models.runtime import input_device

        ids = torch.arange(1, 7, device=input_device(model))[None] % model.config.vocab_size
        last, out = self.block_output(model, self.n_layers - 1, ids)
        logits = out.logits.float().cpu()
        lens = readout.to("cpu")(last.cpu())
        gap = float((lens - logits).abs().max())
        # the lens reads out in float32; a half-precision model rounds its own readout
        precise = next(model.parameters()).dtype == torch.float32
        tol = (1e-3 if precise else 5e-2) * (1 + float(logits.abs().max()))
        if not gap <= tol:
            raise InputError(
                f"{self.name}: the logit lens ({self.norm} norm at '{self.final_norm}', then "
                f"'{self.unembed}') does not reproduce the model's own logits (off by {gap:.3g}); "
                "forensics does not know how this architecture reads out"
            )


EPS_KEYS = ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps")


def arch_of(config, where: str = "config.json") -> Arch:
    """The layout of an HF config (a `PretrainedConfig` or config.json as a dict); `where` names it
    in the error for an architecture no adapter knows."""
    if not isinstance(config, dict):
        config = config.to_dict()
    return _arch(json.dumps(config, sort_keys=True, default=str), where)


def arch_of_checkpoint(path) -> Arch:
    """The layout of the checkpoint directory `path` (its config.json)."""
    from pathlib import Path

    from forensics.models.checkpoint import read_json

    return arch_of(read_json(Path(path) / "config.json"), f"{path}/config.json")


@lru_cache(maxsize=32)
def _arch(config_json: str, where: str) -> Arch:
    from transformers import AutoConfig

    raw = json.loads(config_json)
    raw.pop("transformers_version", None)
    model_type = raw.pop("model_type", None)
    if not model_type:
        raise InputError(f"{where}: no 'model_type' (cannot tell the architecture)")
    try:
        config = AutoConfig.for_model(model_type, **raw)
    except (ValueError, KeyError):
        raise InputError(f"{where}: model_type {model_type!r} is not known to transformers") from None
    if not getattr(config, "architectures", None):
        from transformers import AutoModelForCausalLM

        try:
            with torch.device("meta"):
                config.architectures = [type(AutoModelForCausalLM.from_config(config)).__name__]
        except ValueError:
            raise InputError(
                f"{where}: model_type {model_type!r} has no causal-LM class in transformers"
            ) from None
    adapter = _adapter(config, where)
    mapping = adapter.get_component_mapping()
    missing = [c for c in ("blocks", "ln_final", "unembed") if c not in mapping]
    if missing:
        raise InputError(
            f"{where}: architecture {config.architectures[0]} has no {', '.join(missing)} in its "
            "TransformerLens adapter; forensics cannot find its blocks, final norm and unembedding"
        )
    cfg = adapter.cfg
    if cfg.normalization_type in ("LN", "LNPre"):
        norm = "layer"
    elif cfg.normalization_type in ("RMS", "RMSPre"):
        norm = "rms_offset" if getattr(cfg, "rmsnorm_uses_offset", False) else "rms"
    else:
        raise InputError(
            f"{where}: unknown final norm type {cfg.normalization_type!r} for {config.architectures[0]}"
        )
    cap = getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0
    return Arch(
        name=config.architectures[0],
        n_layers=int(cfg.n_layers),
        blocks=mapping["blocks"].name,
        final_norm=mapping["ln_final"].name,
        unembed=mapping["unembed"].name,
        norm=norm,
        logit_softcap=float(cap) if cap > 0 else None,
        top=tuple((mapping[c].name, k) for c, k in TOP_KINDS.items() if c in mapping),
        parts=tuple(_parts(mapping["blocks"])),
        renames=_renames(config),
    )


def _renames(config) -> tuple[tuple[str, str], ...]:
    """The plain renamings transformers applies to this architecture's stored tensor names on load."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    from transformers.core_model_loading import WeightRenaming

    rules = get_checkpoint_conversion_mapping(config.architectures[0])
    rules = rules or get_checkpoint_conversion_mapping(config.model_type) or []
    return tuple(
        (r.source_patterns[0], r.target_patterns[0])
        for r in rules
        if type(r) is WeightRenaming and len(r.source_patterns) == len(r.target_patterns) == 1
    )


def _adapter(config, where: str):
    from transformer_lens.factories.architecture_adapter_factory import ArchitectureAdapterFactory
    from transformer_lens.model_bridge.sources.transformers.source import (
        build_bridge_config_from_hf,
        determine_architecture_from_hf_config,
    )

    try:
        architecture = determine_architecture_from_hf_config(config)
        bridge_config = build_bridge_config_from_hf(copy.deepcopy(config), architecture, where, torch.float32)
        return ArchitectureAdapterFactory.select_architecture_adapter(bridge_config)
    except (ValueError, NotImplementedError, KeyError) as e:
        raise InputError(
            f"{where}: architecture {config.architectures[0]} is not supported (no TransformerLens "
            f"adapter: {str(e).splitlines()[0][:120]})"
        ) from None


def _parts(blocks) -> list[tuple[str, str]]:
    """(HF path inside a block, kind) for each component the adapter names in a block."""
    out = []
    for name, component in blocks.submodules.items():
        if name in PART_KINDS and component.name:
            out.append((component.name, PART_KINDS[name]))
        for sub, inner in getattr(component, "submodules", {}).items():
            kind = PART_KINDS.get(f"{name}.{sub}")
            if kind and inner.name:  # (GPT-2's q/k/v are the bridge's own split: no HF name matches)
                out.append((f"{component.name}.{inner.name}", kind))
    return out


def _aliases(path: str) -> tuple[str, ...]:
    """A module path and, for a base-model path, the same without its prefix (as older checkpoints
    such as the hub's GPT-2 store their tensors)."""
    return (path, path.split(".", 1)[1]) if "." in path else (path,)


@lru_cache(maxsize=64)
def _block_pattern(blocks: str) -> re.Pattern:
    head, _, tail = blocks.rpartition(".")
    prefix = rf"(?:{re.escape(head)}\.)?" if head else ""
    return re.compile(rf"(?:^|\.){prefix}{re.escape(tail)}\.(\d+)\.")


def _under(rest: str, path: str) -> bool:
    return rest == path or rest.startswith(path + ".")


def _module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    """The HF module at `path` (inside a booted bridge, the HF module its component wraps)."""
    for candidate in _aliases(path):
        try:
            module = model.get_submodule(candidate)
        except AttributeError:
            continue
        return getattr(module, "original_component", None) or module
    raise InputError(
        f"{type(model).__name__}: no module '{path}' (the architecture's layout says it is there)"
    )


def tiny_config(
    model_type: str,
    *,
    vocab_size: int,
    d_model: int,
    layers: int,
    heads: int,
    n_positions: int,
    special: dict[str, int | None],
):
    """A small HF config of the family `model_type` (the world's models): full multi-head attention,
    an MLP 4× wide, untied embeddings; refused unless the family's layout is known here."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.for_model(
            model_type,
            vocab_size=vocab_size,
            hidden_size=d_model,
            intermediate_size=4 * d_model,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            head_dim=d_model // heads,
            max_position_embeddings=n_positions,
            tie_word_embeddings=False,
            **special,
        )
    except ValueError:
        raise InputError(f"model_type {model_type!r} is not known to transformers") from None
    except (NotImplementedError, TypeError, AttributeError) as e:  # a config that refuses these sizes
        raise InputError(
            f"model_type {model_type!r}: no small config of it ({str(e).splitlines()[0][:100]})"
        ) from None
    arch_of(config, f"model_type {model_type!r}")
    return config
