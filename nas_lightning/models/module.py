"""The LightningModule: a predictor meta-learned with MAML (manual optimization)."""

from __future__ import annotations

import functools
import logging
import math
from typing import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.functional import kendall_rank_corrcoef, spearman_corrcoef

from nas_lightning.benchmarks import space
from nas_lightning.data.episodes import standardise
from nas_lightning.models import fused, maml
from nas_lightning.models.predictors import PREDICTORS, ContextEncoder

log = logging.getLogger(__name__)
NAN_POLICIES = ("stop", "skip")


class NonFiniteLoss(RuntimeError):
    """The meta-loss became NaN or infinite (``on_nan='stop'``)."""


class MetaPredictor(L.LightningModule):
    """A performance predictor whose initialisation (and inner learning rates) is meta-learned.

    Args:
        predictor: ``"mlp"`` (flat encoding) or ``"gcn"`` (cell graph).
        hidden: hidden width of the predictor.
        layers: hidden layers (MLP) or graph convolutions (GCN).
        encoding: ``"onehot+path"`` or ``"onehot"`` for the MLP, ``"graph"`` for the GCN.
        context: size of the task context from the support set and direction (0: no conditioning).
        inner_steps: SGD steps of the inner loop.
        inner_lr: initial inner learning rate.
        learn_inner_lr: learn one inner learning rate per parameter entry (Meta-SGD).
        first_order: drop second-order terms of the meta-gradient.
        loss: ``"rank"`` (pairwise logistic) or ``"mse"`` on standardised targets.
        lr: meta learning rate (Adam).
        lr_decay_steps: cosine decay of the meta learning rate over this many meta-steps, then
            constant at 5% (0: constant); independent of ``max_epochs`` so resumed runs match.
        grad_clip: clip the meta-gradient norm (0: off).
        on_nan: ``"stop"`` raises on a non-finite meta-loss, ``"skip"`` skips the step with a warning.
        val_members: bootstrap members when scoring for search (spread = exploration signal).
        compile: run the training meta-step (inner loop, query loss and their backward) through
            ``torch.compile`` (inductor; needs a C++ compiler on CPU). The first step compiles for
            a while (seconds to a minute); later steps are faster (see BENCHMARKS.md). Validation
            and search stay eager.
    """

    def __init__(self, predictor: str = "mlp", hidden: int = 128, layers: int = 2, encoding: str = "onehot+path",
                 context: int = 32, inner_steps: int = 1, inner_lr: float = 0.01, learn_inner_lr: bool = True,
                 first_order: bool = False, loss: str = "rank", lr: float = 1e-3, lr_decay_steps: int = 2000,
                 grad_clip: float = 1.0, on_nan: str = "stop", val_members: int = 8,
                 compile: bool = False) -> None:
        super().__init__()
        if predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {predictor!r}; choose one of {', '.join(PREDICTORS)}")
        if loss not in maml.LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(maml.LOSSES)}")
        if on_nan not in NAN_POLICIES:
            raise ValueError(f"unknown on_nan {on_nan!r}; choose one of {', '.join(NAN_POLICIES)}")
        self.save_hyperparameters()
        self.hparams["space"] = space.SPACE_NAME
        self.automatic_optimization = False
        self.net = PREDICTORS[predictor](hidden, layers, encoding, context)
        self.context_encoder = ContextEncoder(self.net.input_dim, 64, context) if context else None
        self.inner_lrs = nn.ParameterDict({
            k.replace(".", "__"): nn.Parameter(torch.full_like(p, inner_lr), requires_grad=learn_inner_lr)
            for k, p in self.net.named_parameters()
        })
        self.register_buffer("codes", self.net.encode(space.all_indices()), persistent=False)
        self.val_metrics = nn.ModuleDict({
            f"{m}_{w}": MeanMetric() for m in ("spearman", "kendall", "mse") for w in ("before", "after")
        })

    # -- functional pieces -------------------------------------------------------------------
    def params(self) -> maml.Params:
        return dict(self.net.named_parameters())

    def lrs(self) -> maml.Params:
        return {k: self.inner_lrs[k.replace(".", "__")] for k, _ in self.net.named_parameters()}

    def encode(self, archs: torch.Tensor) -> torch.Tensor:
        """Encoded architectures ``[..., D]`` of indices ``archs [...]`` (a row gather)."""
        return nn.functional.embedding(archs, self.codes)

    def context(self, xs: torch.Tensor, ys: torch.Tensor, mask: torch.Tensor, maximise: torch.Tensor) -> torch.Tensor | None:
        return None if self.context_encoder is None else self.context_encoder(xs, ys, mask, maximise)

    def adapt(self, support: torch.Tensor, ys: torch.Tensor, maximise: torch.Tensor,
              mask: torch.Tensor | None = None, meta_graph: bool = True) -> tuple[maml.Params, torch.Tensor | None]:
        """Adapt to support sets ``[T, K]`` (standardised targets ``ys [T, K]``).

        Args:
            meta_graph: keep what the meta-gradient needs (off for validation and inference:
                first-order, no graph kept).

        Returns:
            Per-task parameters and contexts.
        """
        mask = torch.ones_like(ys, dtype=torch.bool) if mask is None else mask
        xs = self.encode(support)
        z = self.context(xs, ys, mask, maximise)
        first_order = self.hparams.first_order or not meta_graph
        fast = maml.adapt(self.net, self.params(), self.lrs(), xs, ys, self.hparams.inner_steps,
                          first_order, self.hparams.loss, mask, z)
        return fast, z

    # -- training ---------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """One meta-step on this process's share of the meta-batch.

        Under DDP (``trainer.world_size > 1``) each rank holds a slice of the meta-batch
        (:meth:`NASTaskDataModule.shard`) with per-episode weights ``batch["weight"]`` that make
        the ranks' losses add up to the whole meta-batch's mean; DDP's reducer averages the
        gradients (the MAML graph reaches the real parameters, second-order terms included), so
        every rank takes the step a single process takes on the whole meta-batch. The finiteness
        check and the logged loss use that global mean, so every rank decides alike.
        """
        opt = self.optimizers()
        per_episode = self.query_losses(batch)
        weight = batch.get("weight")
        loss = per_episode.mean() if weight is None else (per_episode * weight).sum()
        total = self._meta_batch_loss(loss)
        if not torch.isfinite(total):  # the same verdict on every rank: no rank leaves a collective behind
            msg = f"non-finite meta-loss {float(total)} at epoch {self.current_epoch}, step {self.global_step}"
            if self.hparams.on_nan == "stop":
                raise NonFiniteLoss(msg + "; lower model.lr or set model.on_nan skip")
            log.warning("%s: step skipped", msg)
            return
        opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        self.lr_schedulers().step()
        n = int(batch["support"].shape[0]) * self.trainer.world_size
        self.log("train/meta_loss", total, prog_bar=True, batch_size=n)
        self.log("train/lr", opt.param_groups[0]["lr"], batch_size=n)

    def query_losses(self, batch: dict[str, torch.Tensor], compiled: bool | None = None) -> torch.Tensor:
        """Query loss of every episode after adapting on its support set, ``[T]`` (differentiable
        in the meta-parameters): the meta-step's forward.

        Args:
            compiled: through ``torch.compile`` or eager; ``None`` follows the ``compile`` argument.
        """
        compiled = self.hparams.compile if compiled is None else compiled
        fn = _compiled_query_losses() if compiled else _query_losses
        return fn(self, batch["support"], batch["ys"], batch["maximise"], batch["query"], batch["yq"],
                  batch["query_mask"])

    def _meta_batch_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The whole meta-batch's mean loss (detached): the local loss, averaged over ranks under DDP."""
        total = loss.detach().clone()  # a copy: the collective works in place
        if self.trainer.world_size > 1:
            total = self.trainer.strategy.reduce(total, reduce_op="mean")
        return total

    def configure_optimizers(self):
        opt = torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=self.hparams.lr)
        n = self.hparams.lr_decay_steps

        def factor(step: int) -> float:
            if n <= 0:
                return 1.0
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, n) / n))

        return [opt], [torch.optim.lr_scheduler.LambdaLR(opt, factor)]

    # -- validation -------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        target, mask = batch["yq"], batch["query_mask"]
        with torch.enable_grad():
            fast, z = self.adapt(batch["support"], batch["ys"], batch["maximise"], meta_graph=False)
        xq = self.encode(batch["query"])
        prior = maml.broadcast({k: v.detach() for k, v in self.params().items()}, len(xq))
        for when, params in (("before", prior), ("after", {k: v.detach() for k, v in fast.items()})):
            pred = maml.batched_forward(self.net, params, xq, None if z is None else z.detach())
            for e in range(len(pred)):  # episodes may differ in valid query entries
                p, t = pred[e][mask[e]], target[e][mask[e]]
                self.val_metrics[f"spearman_{when}"].update(spearman_corrcoef(p, t))
                self.val_metrics[f"kendall_{when}"].update(kendall_rank_corrcoef(p, t))
                self.val_metrics[f"mse_{when}"].update(((p - t) ** 2).mean())

    def on_validation_epoch_end(self) -> None:
        for name, metric in self.val_metrics.items():
            value = metric.compute()
            # torchmetrics already gathered every rank's episodes; sync_dist keeps the ranks' copies equal
            self.log(f"val/{name}", value, prog_bar=name == "spearman_after", sync_dist=True)
            if name == "spearman_after":
                self.log("hp_metric", value, sync_dist=True)  # TensorBoard's hparams view pairs it with the config
            metric.reset()

    # -- inference API ----------------------------------------------------------------------
    @torch.no_grad()
    def score(self, support: torch.Tensor, targets: torch.Tensor, candidates: torch.Tensor, maximise: bool = True,
              members: int = 1, generator: torch.Generator | None = None, shortlist: int | None = 1024) -> torch.Tensor:
        """Adapt on ``k`` evaluated architectures of a task and score ``candidates``.

        Args:
            support: architecture indices ``[k]`` (k may be 0: the meta-learned prior).
            targets: their values with the direction folded in (higher is better), ``[k]``.
            candidates: architecture indices to score ``[C]`` (the full space in one call is fine).
            maximise: the raw metric's direction (task metadata for the context encoder).
            members: 1 for the adapted predictor; more adds bootstrap resamples of the support
                (member 0 always uses the whole support), whose spread is an uncertainty signal.
            generator: drives the bootstrap draws.
            shortlist: members beyond the first score only the ``shortlist`` candidates member
                0 ranks highest, and repeat member 0's scores elsewhere (no spread there): a
                search picks among the top anyway, at a fraction of the cost of scoring the
                whole space with every member. ``None`` scores every candidate with every member.

        Returns:
            Scores ``[members, C]``, higher is better.
        """
        dev = self.codes.device
        support, candidates = support.to(dev).long(), candidates.to(dev).long()
        k = len(support)
        y = targets.to(dev).float()
        rows = [torch.arange(k, device=dev)]
        for _ in range(members - 1):
            rows.append(torch.randint(k, (k,), generator=generator).to(dev) if k else rows[0])
        idx = torch.stack(rows)
        sup, ys = support[idx], y[idx]
        ys, _ = standardise(ys, ys)
        flag = torch.full((members,), bool(maximise), device=dev)
        if k >= 2:
            with torch.enable_grad():
                fast, z = self.adapt(sup, ys, flag, meta_graph=False)
            fast = {name: v.detach() for name, v in fast.items()}
            z = None if z is None else z.detach()
        else:
            xs = self.encode(sup) if k else torch.zeros(members, 0, self.codes.shape[1], device=dev)
            ys = ys if k else torch.zeros(members, 0, device=dev)
            z = self.context(xs, ys, torch.ones_like(ys, dtype=torch.bool), flag)
            fast = maml.broadcast(self.params(), members)
        if shortlist is None or members == 1 or len(candidates) <= shortlist:
            return self._forward_members(fast, z, candidates)
        first = self._forward_members({n: v[:1] for n, v in fast.items()}, None if z is None else z[:1], candidates)
        top = torch.topk(first[0], shortlist).indices
        rest = self._forward_members({n: v[1:] for n, v in fast.items()}, None if z is None else z[1:], candidates[top])
        others = first.repeat(members - 1, 1)
        others[:, top] = rest
        return torch.cat([first, others])

    def _forward_members(self, fast: maml.Params, z: torch.Tensor | None, candidates: torch.Tensor) -> torch.Tensor:
        """Scores ``[M, C]`` of candidate indices under per-member parameters ``{name: [M, ...]}``.

        Members share the inputs: one plain forward each, never an ``[M, C, D]`` copy. An MLP on
        a binary encoding (one-hot, path) takes its first layer as a sum of the weight columns
        of each candidate's set features (``embedding_bag``), not a dense product.
        """
        spec = fused.mlp_spec(self.net)
        active = self._active_features() if spec is not None else None
        bags = active[candidates] if active is not None else None
        x = self.encode(candidates) if bags is None else None
        out = []
        for m in range(len(next(iter(fast.values())))):
            params, zm = {n: v[m] for n, v in fast.items()}, None if z is None else z[m]
            if spec is None:
                out.append(torch.func.functional_call(self.net, params, (x, *([] if zm is None else [zm]))))
            else:
                out.append(fused.forward_single(spec, params, zm, x, bags))
        return torch.stack(out)

    def _active_features(self) -> torch.Tensor | None:
        """Positions ``[NUM_ARCHS, n]`` of the set features of every code, if all codes are binary
        with the same number ``n`` of ones (else ``None``); computed once per device."""
        cached = getattr(self, "_active_cache", None)
        if cached is not None and cached[0] == self.codes.device:
            return cached[1]
        ones = self.codes != 0
        counts = ones.sum(-1)
        binary = bool((self.codes[ones] == 1).all()) and bool((counts == counts[0]).all())
        active = ones.nonzero()[:, 1].view(len(self.codes), -1) if binary else None
        self._active_cache = (self.codes.device, active)
        return active


def _query_losses(module: MetaPredictor, support: torch.Tensor, ys: torch.Tensor, maximise: torch.Tensor,
                  query: torch.Tensor, yq: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
    fast, z = module.adapt(support, ys, maximise)
    pred = maml.batched_forward(module.net, fast, module.encode(query), z)
    return maml.episode_loss(pred, yq, module.hparams.loss, query_mask)


@functools.cache
def _compiled_query_losses() -> Callable[..., torch.Tensor]:
    """:func:`_query_losses` through ``torch.compile`` (one wrapper; dynamo caches per module and shapes)."""
    return torch.compile(_query_losses)
