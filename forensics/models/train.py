"""The one fine-tuning loop: world building, unlearning methods and relearning attacks all use it.

Data come as named streams of examples; an epoch is one pass over the first stream while the
others cycle beside it (e.g. forget + retain for gradient difference). The loss is pluggable and
defaults to the mean target-token NLL over streams.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from forensics.errors import InputError, warn
from forensics.facts.formats import Example
from forensics.models.tokens import collate, encode, pad_id, target_nll

Batch = dict[str, torch.Tensor]
LossFn = Callable[[torch.nn.Module, Mapping[str, Batch]], torch.Tensor]
EpochHook = Callable[[int, torch.nn.Module], "Mapping[str, object] | None"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; `steps`, when set, replaces `epochs` as the stopping rule."""

    lr: float = 1e-3
    epochs: int = 1
    steps: int | None = None
    batch_size: int = 32
    warmup: int = 0  # optimizer steps of linear warm-up
    schedule: str = "constant"  # or "cosine" (decay to 0 over the run)
    optimizer: str = "adamw"  # or "lion"
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    seed: int = 0
    check_every: int | None = None  # steps between records / `on_epoch` calls (default: one pass)
    group_by_length: int = 8  # batches sorted by length within runs of this many (1: plain shuffle)


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al., 2023): sign of an interpolated momentum, decoupled weight decay."""

    def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(m * b1 + p.grad * (1 - b1)), alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


def nll_loss(model: torch.nn.Module, batches: Mapping[str, Batch]) -> torch.Tensor:
    """Mean target-token NLL of each stream's batch, averaged over streams."""
    losses = []
    for batch in batches.values():
        nll, count = target_nll(model, batch)
        losses.append(nll.sum() / count.sum().clamp(min=1))
    return torch.stack(losses).mean()


FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float64)  # float16 keeps the for-loop step (below)


def _fusable(params: list[torch.nn.Parameter]) -> bool:
    """Whether AdamW's fused kernel takes these parameters: on CPU or CUDA, in a dtype it steps as the
    for-loop does. On a 135M model on 2 CPU cores it is 2.6× the for-loop step (1.3 s against 3.4 s per
    9 steps). float16 is left out: its for-loop step overflows on CPU (the documented failure a study
    reports), where the fused one trained some models and not others (on the micro world, the
    original fitted T and the never-learned control did not)."""
    return all(p.dtype in FUSED_DTYPES and p.device.type in ("cpu", "cuda") for p in params)


def _optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=_fusable(params))
    if cfg.optimizer == "lion":
        return Lion(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise InputError(f"unknown optimizer '{cfg.optimizer}' (choose adamw or lion)")


def _lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.schedule == "cosine":
        span = max(1, total - cfg.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup) / span)))
    if cfg.schedule == "constant":
        return 1.0
    raise InputError(f"unknown schedule '{cfg.schedule}' (choose constant or cosine)")


def _cycle(lengths: list[int], batch_size: int, gen: torch.Generator, group: int) -> Iterator[list[int]]:
    """Endless shuffled index batches over the items, reshuffled every pass. With `group` > 1, each
    run of `group` batches of the shuffled order is sorted by length before it is cut into batches
    (then the batches are shuffled): a batch pads to its longest item, and mixing a 70-token question
    with 25-token ones costs a 135M model twice the compute for the same examples."""
    n = len(lengths)
    while True:
        order = torch.randperm(n, generator=gen).tolist()
        batches = []
        for start in range(0, n, batch_size * group):
            chunk = order[start : start + batch_size * group]
            if group > 1:
                chunk = sorted(chunk, key=lambda i: lengths[i])
            batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
        if group > 1:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        yield from batches


_DIVERGED: set[str] = set()  # kinds of run warned about since `warn_again`


def warn_again() -> None:
    """Let each kind of run warn once more (a study's start: each study says what diverged in it)."""
    _DIVERGED.clear()


def _diverged(desc: str, step: int, value: torch.Tensor, params: list) -> dict:
    """What a run whose loss is no longer finite records (the step, the dtype): its numbers mean
    nothing from there on, so it stops (a study then finds its attack cannot fit T and gives no
    verdict). Warns once per kind of run."""
    dtype = params[0].dtype if params else value.dtype
    what = desc.split(" ")[0]
    if what not in _DIVERGED:
        _DIVERGED.add(what)
        hint = " (float16 cannot train on CPU: use float32 or bfloat16)" if dtype == torch.float16 else ""
        warn(f"{desc}: the loss is {value.item()} at step {step + 1}, in {dtype}: it stops there{hint}")
    return {"at_step": step + 1, "dtype": str(dtype).removeprefix("torch.")}


def train(
    model: torch.nn.Module,
    tokenizer,
    streams: Mapping[str, Sequence[Example]],
    cfg: TrainConfig,
    *,
    loss: LossFn = nll_loss,
    params: list | None = None,
    on_epoch: EpochHook | None = None,
    desc: str = "train",
    progress: bool = True,
) -> list[dict]:
    """Fine-tune `model` in place; returns one record per epoch (mean loss, optimizer steps taken, what
    `on_epoch` said).

    `params` restricts which parameters are updated (default: all that require grad).
    `on_epoch(epoch, model)` may return metrics to record; a true `stop` entry ends training. A loss
    that is not finite ends it at once, before its step: the last record then holds it and `diverged`
    (`_diverged`), and `on_epoch` has seen the model as the finite steps left it.
    """
    if not streams or any(len(ex) == 0 for ex in streams.values()):
        raise InputError(f"{desc}: nothing to train on (an empty stream)")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    pid = pad_id(tokenizer)
    encoded = {name: [encode(tokenizer, e.prompt, e.target) for e in ex] for name, ex in streams.items()}
    main = next(iter(encoded))
    per_epoch = math.ceil(len(encoded[main]) / cfg.batch_size)
    total = cfg.steps if cfg.steps is not None else cfg.epochs * per_epoch
    per_epoch = cfg.check_every or per_epoch
    params = [p for p in model.parameters() if p.requires_grad] if params is None else params
    opt = _optimizer(params, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, cfg))
    feeds = {
        name: _cycle([len(ids) for ids, _ in items], cfg.batch_size, gen, cfg.group_by_length)
        for name, items in encoded.items()
    }
    history: list[dict] = []
    running, seen = 0.0, 0
    model.train()
    bar = tqdm(range(total), desc=desc, disable=not progress, leave=False)
    for step in bar:
        batches = {
            name: collate([encoded[name][i] for i in next(feeds[name])], pid, device) for name in encoded
        }
        value = loss(model, batches)
        diverged = None if torch.isfinite(value) else _diverged(desc, step, value, params)
        if diverged is None:
            opt.zero_grad(set_to_none=True)
            value.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
        running, seen = running + value.item(), seen + 1
        if diverged or (step + 1) % per_epoch == 0 or step + 1 == total:
            record = {"epoch": len(history) + 1, "step": step + 1, "loss": running / seen}
            if diverged:  # its step was not taken
                record.update(step=step, diverged=diverged)
            running, seen = 0.0, 0
            if on_epoch is not None:
                model.eval()
                record.update(on_epoch(record["epoch"], model) or {})
                model.train()
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            if record.get("stop") or diverged:
                break
    bar.close()
    model.eval()
    return history
