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

from nas_lightning.errors import UserError
from nas_lightning.spaces import get_space
from nas_lightning.models import maml
from nas_lightning.models.batch import EpisodeBatch
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
        encoding: one of the space's encodings for the MLP (NB201: ``"onehot+path"``, ``"onehot"``,
            ``"path"``; NAS-Bench-Graph: ``"layers"``, ``"onehot"``, ``"adjacency"``), ``"graph"`` for the GCN.
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
        space: the search space the predictor scores (a checkpoint records it and refuses tasks of
            another space).
    """

    def __init__(self, predictor: str = "mlp", hidden: int = 128, layers: int = 2, encoding: str = "onehot+path",
                 context: int = 32, inner_steps: int = 1, inner_lr: float = 0.01, learn_inner_lr: bool = True,
                 first_order: bool = False, loss: str = "rank", lr: float = 1e-3, lr_decay_steps: int = 2000,
                 grad_clip: float = 1.0, on_nan: str = "stop", val_members: int = 8,
                 compile: bool = False, space: str = "nb201") -> None:
        super().__init__()
        if predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {predictor!r}; choose one of {', '.join(PREDICTORS)}")
        if loss not in maml.LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(maml.LOSSES)}")
        if on_nan not in NAN_POLICIES:
            raise ValueError(f"unknown on_nan {on_nan!r}; choose one of {', '.join(NAN_POLICIES)}")
        self.save_hyperparameters()
        self.space = get_space(space)
        if predictor == "mlp" and encoding not in self.space.encodings:
            raise UserError(f"unknown encoding {encoding!r} for search space {space}; set model.encoding to one of "
                            f"{', '.join(self.space.encodings)}")
        self.automatic_optimization = False
        self.net = PREDICTORS[predictor](hidden, layers, encoding, context, space=self.space)
        self.context_encoder = ContextEncoder(self.net.input_dim, 64, context) if context else None
        self.inner_lrs = nn.ParameterDict({
            k.replace(".", "__"): nn.Parameter(torch.full_like(p, inner_lr), requires_grad=learn_inner_lr)
            for k, p in self.net.named_parameters()
        })
        self.register_buffer("codes", self.net.encode(self.space.all_indices()), persistent=False)
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

    def adapt(self, support_archs: torch.Tensor, ys: torch.Tensor, maximise: torch.Tensor,
              mask: torch.Tensor | None = None, meta_graph: bool = True) -> tuple[maml.Params, torch.Tensor | None]:
        """Adapt to support sets ``support_archs [T, K]`` (standardised targets ``ys [T, K]``).

        Args:
            meta_graph: keep what the meta-gradient needs (off for validation and inference:
                first-order, no graph kept).

        Returns:
            Per-task parameters and contexts.
        """
        mask = torch.ones_like(ys, dtype=torch.bool) if mask is None else mask
        xs = self.encode(support_archs)
        z = self.context(xs, ys, mask, maximise)
        first_order = self.hparams.first_order or not meta_graph
        fast = maml.adapt(self.net, self.params(), self.lrs(), xs, ys, self.hparams.inner_steps,
                          first_order, self.hparams.loss, mask, z)
        return fast, z

    # -- training ---------------------------------------------------------------------------
    def training_step(self, batch: EpisodeBatch, batch_idx: int) -> None:
        """One meta-step on this process's share of the meta-batch.

        Under DDP (``trainer.world_size > 1``) each rank holds a slice of the meta-batch
        (:meth:`NASTaskDataModule.shard`) with per-episode weights ``batch.weight`` that make
        the ranks' losses add up to the whole meta-batch's mean; DDP's reducer averages the
        gradients (the MAML graph reaches the real parameters, second-order terms included), so
        every rank takes the step a single process takes on the whole meta-batch. The finiteness
        check and the logged loss use that global mean, so every rank decides alike.
        """
        opt = self.optimizers()
        per_episode = self.query_losses(batch)
        loss = per_episode.mean() if batch.weight is None else (per_episode * batch.weight).sum()
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
        n = len(batch) * self.trainer.world_size
        self.log("train/meta_loss", total, prog_bar=True, batch_size=n)
        self.log("train/lr", opt.param_groups[0]["lr"], batch_size=n)

    def query_losses(self, batch: EpisodeBatch, compiled: bool | None = None) -> torch.Tensor:
        """Query loss of every episode after adapting on its support set, ``[T]`` (differentiable
        in the meta-parameters): the meta-step's forward, and the one per-episode loss.

        Args:
            compiled: through ``torch.compile`` or eager; ``None`` follows the ``compile`` argument.
        """
        compiled = self.hparams.compile if compiled is None else compiled
        fn = _compiled_query_losses() if compiled else _query_losses
        return fn(self, batch.support_archs, batch.ys, batch.maximise, batch.query_archs, batch.yq, batch.query_mask)

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
    def validation_step(self, batch: EpisodeBatch, batch_idx: int) -> None:
        target, mask = batch.yq, batch.query_mask
        with torch.enable_grad():
            fast, z = self.adapt(batch.support_archs, batch.ys, batch.maximise, meta_graph=False)
        xq = self.encode(batch.query_archs)
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


def _query_losses(module: MetaPredictor, support_archs: torch.Tensor, ys: torch.Tensor, maximise: torch.Tensor,
                  query_archs: torch.Tensor, yq: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
    fast, z = module.adapt(support_archs, ys, maximise)
    pred = maml.batched_forward(module.net, fast, module.encode(query_archs), z)
    return maml.episode_loss(pred, yq, module.hparams.loss, query_mask)


@functools.cache
def _compiled_query_losses() -> Callable[..., torch.Tensor]:
    """:func:`_query_losses` through ``torch.compile`` (one wrapper; dynamo caches per module and shapes)."""
    return torch.compile(_query_losses)
