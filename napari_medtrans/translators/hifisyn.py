"""HiFi-Syn (Yu et al., Medical Image Analysis 2025): hierarchical granularity discrimination on a DRIT++ backbone.

The backbone (:class:`~napari_medtrans.translators.disentangle.DisentangleNet`) splits images into content and
attribute. HiFi-Syn adds:

* the **Brain Memory Bank** (:class:`BrainMemoryBank`, Sec. 3.2.1): ``T`` items with keys shared by both
  modalities and one value per item and modality. Items are structure-wise (tied to a label: background, CSF, GM,
  WM) or global. A content pixel (query ``q``) reads the values of the target modality weighted by a softmax over
  cosine similarities to the keys (Eq. 1-3) and the generator draws the target from the content and this
  per-pixel attribute. Keys and values follow a momentum update (Eq. 4-6, ``alpha_p = 0.01``);
* **PGD** (Eq. 7): pixel-level contrastive loss, the content pixel of ``m_i`` and the same pixel of ``m_{i->j}``'s
  content are positives, every other pixel a negative;
* **SGD** (Eq. 8-11): structure-level contrastive loss on label-masked contents, with the rank-based weights
  ``w_s = exp(-alpha_s rank(d_s))``, ``alpha_s = 0.5``;
* **GGD** (Eq. 12): image-level contrastive loss on whole contents;
* the overall loss (Eq. 13-17): ``l1 L_adv^cont + l2 L_adv^domain + l3 L_cyc + l4 L_rec + l5 L_PGD + l6 L_SGD +
  l7 L_GGD`` with DRIT++'s ``l1..l4`` (1, 1, 10, 10) and the paper's ``l5 = l7 = 1``, ``l6 = 2``.

Labels are used in training only; :meth:`HiFiSynTranslator.translate` reads the bank without them.

Choices where the paper is silent
---------------------------------
* **Item layout.** ``structure_items=(2, 2, 3, 3)`` for labels 0-3 (background, CSF, GM, WM) and as many global
  items (10): the paper's 20 items for IXI/UKB. Pixels with another label (the phantom's tumour labels 4-6) read
  the global items only.
* **Which items a query reads.** In training a labelled pixel reads the items of its label and the global items
  (Fig. 3). Without labels (inference) a pixel reads the global items only (``unlabelled_read="global"``, the
  paper's reason for global items); ``"all"`` lets it read every item.
* **Values.** The value written by a pixel (Eq. 5) is the attribute encoder's output at that pixel: the attribute
  encoder returns a map on the content grid (``attr_spatial``). Keys and values are L2-normalised (Eq. 4-5).
* **Scale of the values against the attributes.** The generator takes, through the same inputs, the encoder's
  raw attribute map (self-reconstruction, Eq. 14) and the bank's read, a convex combination of unit values
  (Eq. 3, 5). With ``attr_injection="concat"`` (old checkpoints) those scales drifted apart in training (raw maps
  mean abs 13.6, values 0.26 in the shipped model, issue 19) and the generator learned to work from the raw maps
  only: zeroing the read changed the output by 0.004. With ``"adain"`` (what the recipe trains) the generator scales
  every attribute to unit root-mean-square per pixel before it modulates (see
  :mod:`~napari_medtrans.translators.disentangle`), so the read, the raw maps and the values all reach it on one
  scale and the values can stay as Eq. 5 has them.
* **Temperature of the read** (``read_tau``). Eq. 1 is a softmax over cosine similarities, which lie in
  [-1, 1]: over the 10 global items the largest weight averaged 0.13 in the shipped model and the read was
  spatially flat (SD 0.003; issue 19), one attribute for the whole image. The read here is
  ``softmax(sim / read_tau)`` with ``read_tau = 0.07``: the temperature this module gives the contrastive losses
  on the same cosine similarities of the same content pixels (Eq. 7, 11, 12; ``tau``, the SupCon default, as
  the paper gives no value), so a pixel leans on the items its content is like as sharply as PGD makes contents
  tell pixels apart. After 250 training steps on the benchmark the largest weight averaged 0.6 and zeroing the
  read changed the output by 0.36. None (old checkpoints) is 1, Eq. 1 as printed. The update weights of Eq. 6 are
  left as printed.
* **Eq. 4-6 literally.** ``k <- ||alpha_p k + (1 - alpha_p) sum_n u^{n,t} q^n||`` with ``alpha_p`` on the *old*
  key, as printed. The queries that update item ``t`` are those whose largest affinity (Eq. 1) is ``t``; ``u``
  is the softmax of their similarities to ``k_t`` over those queries (Eq. 6). Items no query picks are kept.
* **Contrastive sets.** Anchors are the features of ``m_i`` and of ``m_{i->j}`` (both directions, NT-Xent style);
  the candidates ``Omega'`` are all other features in the batch (the positive included). PGD samples at most
  ``max_pixels`` pixels per direction. Temperatures ``tau1 = tau2 = tau3 = 0.07`` (the SupCon default). SGD ranks
  ``d_s`` in descending order per subject (largest deformation: rank 0, weight 1), and compares the masked
  content maps flattened (Eq. 8); structures absent from a slice are skipped.
* **Attribute of the self-reconstruction and cycle.** The self-reconstruction takes the input's own attribute map
  (Eq. 14). The second translation of the cross-cycle (Eq. 13) reads the memory bank, as the first one and
  inference do (``cycle_attr="bank"``, the default): the attribute map here lies on the content grid, so with
  the input's own map (``cycle_attr="encoder"``, DRIT++'s choice for its attribute *vector*) the cycle can be
  met by the attribute alone and no longer checks that the translation kept the content. Measured on the
  phantom (cpu preset, 1250 steps): with ``"encoder"`` the T1 -> T2 translations were noise-like textures,
  worse than returning the input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UnknownChoiceError
from .base import TranslationOutput, Translator, TranslatorSpec, register_translator
from .blocks import check_batch
from .disentangle import ATTR_INJECTIONS, GAN_MODES, DisentangleNet, TwoWayTranslatorMixin

__all__ = [
    "BrainMemoryBank",
    "HiFiSynTranslator",
    "PRESETS",
    "READ_MODES",
    "CYCLE_ATTRS",
    "contrastive_loss",
    "pgd_loss",
    "sgd_loss",
    "sgd_weights",
    "ggd_loss",
    "hifi_syn",
]

READ_MODES = ("global", "all")
CYCLE_ATTRS = ("bank", "encoder")

#: Named sizes. "paper": DRIT++'s widths (64 channels, 2 downsamplings, 4 residual blocks; content 256 channels
#: as in Sec. 4.2). "cpu": a small model that trains on a CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(width=64, n_down=2, n_res=4, attr_dim=8, disc_width=64, disc_layers=3),
    "cpu": dict(width=16, n_down=2, n_res=1, attr_dim=8, disc_width=16, disc_layers=2),
}

#: Eq. 17 weights: DRIT++'s for the first four, the paper's Sec. 4.2 for PGD, SGD and GGD.
DEFAULT_LAMBDAS = dict(content=1.0, domain=1.0, cyc=10.0, rec=10.0, pgd=1.0, sgd=2.0, ggd=1.0)


class BrainMemoryBank(nn.Module):
    """Shared keys and per-modality values, structure-wise and global items (HiFi-Syn Sec. 3.2.1).

    Parameters
    ----------
    key_dim : int
        Channels of the content features (queries and keys).
    value_dim : int
        Channels of the attribute features (values).
    modalities : sequence of str
        One value table per modality.
    structure_items : sequence of int
        Items per label ``0, 1, ...`` (``(2, 2, 3, 3)``: background, CSF, GM, WM).
    global_items : int or None
        Items without a label; None is ``sum(structure_items)`` (the paper's symmetric split).
    alpha_p : float
        The update rate of Eq. 4-5 (0.01).
    unlabelled_read : {"global", "all"}
        Items an unlabelled query reads.
    temperature : float
        Divides the cosine similarities in the read's softmax (Eq. 1); 1 is Eq. 1 as printed.
    """

    def __init__(self, key_dim: int, value_dim: int, modalities: Sequence[str] = ("T1", "T2"), *,
                 structure_items: Sequence[int] = (2, 2, 3, 3), global_items: int | None = None,
                 alpha_p: float = 0.01, unlabelled_read: str = "global", temperature: float = 1.0):
        super().__init__()
        if not (math.isfinite(float(temperature)) and float(temperature) > 0):
            raise ValueError(f'Argument "temperature" must be a positive number, got {temperature!r}.')
        self.temperature = float(temperature)
        structure_items = [int(n) for n in structure_items]
        if any(n < 0 for n in structure_items):
            raise ValueError(f'Argument "structure_items" must hold counts >= 0, got {structure_items!r}.')
        n_global = sum(structure_items) if global_items is None else int(global_items)
        if n_global < 1:
            raise ValueError(f'Argument "global_items" must be >= 1, got {global_items!r}.')
        if unlabelled_read not in READ_MODES:
            raise UnknownChoiceError("memory read mode", str(unlabelled_read), READ_MODES)
        if not 0.0 <= float(alpha_p) <= 1.0:
            raise ValueError(f'Argument "alpha_p" must be in [0, 1], got {alpha_p!r}.')
        self.modalities = tuple(str(m) for m in modalities)
        self.structure_items = tuple(structure_items)
        self.n_structures = len(structure_items)
        self.alpha_p = float(alpha_p)
        self.unlabelled_read = unlabelled_read
        cls = [s for s, n in enumerate(structure_items) for _ in range(n)] + [-1] * n_global
        self.register_buffer("item_class", torch.tensor(cls, dtype=torch.long))
        t = len(cls)
        # Random unit rows made on the CPU even under a "meta" build (the loader's shape check): they are small, a
        # checkpoint overwrites them, and normalising meta tensors would cost a second of decomposition imports.
        self.register_buffer("keys", F.normalize(torch.randn(t, key_dim, device="cpu"), dim=1))
        for m in self.modalities:
            self.register_buffer(f"values_{m}", F.normalize(torch.randn(t, value_dim, device="cpu"), dim=1))

    @property
    def n_items(self) -> int:
        return int(self.item_class.numel())

    def values(self, modality: str) -> torch.Tensor:
        """The value table ``[T, value_dim]`` of ``modality``."""
        if modality not in self.modalities:
            raise UnknownChoiceError("modality", str(modality), self.modalities)
        return getattr(self, f"values_{modality}")

    def allowed(self, labels: torch.Tensor | None, n: int) -> torch.Tensor:
        """``[N, T]`` bool: which items each of ``n`` queries may read (its label's items and the global ones)."""
        is_global = self.item_class < 0
        if labels is None:
            row = is_global if self.unlabelled_read == "global" else torch.ones_like(is_global)
            return row.unsqueeze(0).expand(n, -1)
        labels = labels.reshape(-1).long().to(self.item_class.device)
        return (self.item_class.unsqueeze(0) == labels.unsqueeze(1)) | is_global.unsqueeze(0)

    def similarity(self, queries: torch.Tensor) -> torch.Tensor:
        """Eq. 2: cosine similarity ``[N, T]`` of queries ``[N, C]`` to the keys."""
        return F.normalize(queries.float(), dim=1) @ F.normalize(self.keys.float(), dim=1).t()

    def affinity(self, queries: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 1: softmax over the readable items of the cosine similarity / temperature, ``[N, T]``."""
        sim = self.similarity(queries)
        if self.temperature != 1.0:
            sim = sim / self.temperature
        return sim.masked_fill(~self.allowed(labels, sim.shape[0]), float("-inf")).softmax(dim=1)

    def read_queries(self, queries: torch.Tensor, modality: str, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 3: ``z_bar_n = sum_t w^{n,t} b^t`` for queries ``[N, C]``; returns ``[N, value_dim]``."""
        w = self.affinity(queries, labels)
        return (w @ self.values(modality).float()).to(queries.dtype)

    def read(self, content: torch.Tensor, modality: str, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Read an attribute map ``[B, value_dim, h, w]`` of ``modality`` for a content map ``[B, C, h, w]``.

        ``labels`` (``[B, h, w]`` integers on the content grid, or None) restricts each pixel to its items.
        """
        b, c, h, w = content.shape
        q = content.permute(0, 2, 3, 1).reshape(-1, c)
        out = self.read_queries(q, modality, labels)
        return out.reshape(b, h, w, -1).permute(0, 3, 1, 2)

    def update_weights(self, queries: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 6: ``u^{n,t}``, the softmax over the queries whose closest item is ``t`` (0 for the others)."""
        sim = self.similarity(queries)
        allowed = self.allowed(labels, sim.shape[0])
        nearest = sim.masked_fill(~allowed, float("-inf")).argmax(dim=1)
        picked = F.one_hot(nearest, self.n_items).bool() & allowed
        u = sim.masked_fill(~picked, float("-inf")).softmax(dim=0)
        return torch.where(picked, u, torch.zeros_like(u))

    @torch.no_grad()
    def update(self, queries: Mapping[str, torch.Tensor], attributes: Mapping[str, torch.Tensor],
               labels: Mapping[str, torch.Tensor | None] | None = None) -> None:
        """Momentum update of keys (Eq. 4) and values (Eq. 5) from per-modality queries and attributes.

        ``queries[m]`` is ``[N_m, key_dim]``, ``attributes[m]`` is ``[N_m, value_dim]`` (the attribute of the same
        pixels), ``labels[m]`` is ``[N_m]`` or None.
        """
        a = self.alpha_p
        key_sum = torch.zeros_like(self.keys, dtype=torch.float32)
        key_hit = torch.zeros(self.n_items, dtype=torch.bool, device=self.keys.device)
        for m, q in queries.items():
            lab = None if labels is None else labels.get(m)
            u = self.update_weights(q, lab)  # [N, T]
            hit = (u > 0).any(dim=0)
            key_sum += u.t() @ q.float()
            key_hit |= hit
            buf = self.values(m)
            new_v = F.normalize(a * buf.float() + (1 - a) * (u.t() @ attributes[m].float()), dim=1)  # Eq. 5
            buf.copy_(torch.where(hit.unsqueeze(1), new_v.to(buf.dtype), buf))
        new_k = F.normalize(a * self.keys.float() + (1 - a) * key_sum, dim=1)  # Eq. 4
        self.keys.copy_(torch.where(key_hit.unsqueeze(1), new_k.to(self.keys.dtype), self.keys))


# -- contrastive losses ---------------------------------------------------------------------------------
def contrastive_loss(anchors: torch.Tensor, positives: torch.Tensor, tau: float = 0.07,
                     weights: torch.Tensor | None = None) -> torch.Tensor:
    """The contrastive term shared by Eq. 7, 11 and 12.

    Features ``anchors[n]`` and ``positives[n]`` (``[N, D]``) are a positive pair; every other feature of both
    sets is a negative. Each of the ``2N`` features is an anchor in turn:
    ``-log(exp(w_n CL+ / tau) / sum_{m != n} exp(CL_m / tau))`` with cosine similarities ``CL``; ``weights``
    (``[N]``, default 1) are Eq. 11's ``w_s``. Returns the mean over anchors (0 for an empty set).
    """
    if anchors.shape != positives.shape or anchors.ndim != 2:
        raise ValueError(f"anchors and positives must both be [N, D], got {list(anchors.shape)} and "
                         f"{list(positives.shape)}.")
    n = anchors.shape[0]
    if n == 0:
        return anchors.new_zeros(())
    feats = F.normalize(torch.cat([anchors, positives]).float(), dim=1, eps=1e-8)
    sim = feats @ feats.t()
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=sim.device)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sim.device)
    pos = sim.gather(1, partner[:, None]).squeeze(1)
    w = torch.ones(n, device=sim.device) if weights is None else weights.float().to(sim.device)
    w = torch.cat([w, w])
    log_denominator = torch.logsumexp(sim.masked_fill(self_mask, float("-inf")) / tau, dim=1)
    return (log_denominator - w * pos / tau).mean()


def _pixels(z: torch.Tensor) -> torch.Tensor:
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def pgd_loss(content: torch.Tensor, translated_content: torch.Tensor, *, tau: float = 0.07, max_pixels: int = 256,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 7: pixel-level contrastive loss between the content of ``m_i`` and of ``m_{i->j}`` (``[B, C, h, w]``).

    The same pixel of both maps is a positive pair; at most ``max_pixels`` pixels are drawn (with ``generator``).
    """
    a, p = _pixels(content), _pixels(translated_content)
    if a.shape[0] > max_pixels:
        idx = torch.randperm(a.shape[0], generator=generator)[:max_pixels].to(a.device)
        a, p = a[idx], p[idx]
    return contrastive_loss(a, p, tau)


def sgd_weights(d: torch.Tensor, alpha_s: float = 0.5) -> torch.Tensor:
    """Eq. 10: ``w = exp(-alpha_s rank(d))`` with rank 0 for the largest deformation ``d`` (weights in (0, 1])."""
    order = torch.argsort(d, descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(d.numel(), device=d.device)
    return torch.exp(-float(alpha_s) * rank.float())


def _labels_on(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Integer labels ``[B, H, W]`` (or ``[B, 1, H, W]``) resampled (nearest) to the content grid ``[B, h, w]``."""
    if labels.ndim == 4:
        labels = labels[:, 0]
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.round().long()
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].round().long()


def sgd_loss(content: torch.Tensor, translated_content: torch.Tensor, labels: torch.Tensor, *,
             n_structures: int = 4, tau: float = 0.07, alpha_s: float = 0.5) -> torch.Tensor:
    """Eq. 8-11: structure-level contrastive loss with rank-based re-weighting.

    ``labels`` are ``[B, h, w]`` integers on the content grid. For each slice and each structure ``s`` present in
    it, Eq. 8 masks both content maps; Eq. 9 gives ``d_s = sum |z^{c,s}_i - z^{c,s}_{i->j}|``, Eq. 10 the weight,
    Eq. 11 the loss with the masked maps of the same slice and structure as positives.
    """
    anchors, positives, weights = [], [], []
    for b in range(content.shape[0]):
        za, zp, ds = [], [], []
        for s in range(int(n_structures)):
            mask = (labels[b] == s).to(content.dtype)
            if not bool(mask.any()):
                continue
            a = (content[b] * mask).flatten()  # Eq. 8
            p = (translated_content[b] * mask).flatten()
            za.append(a)
            zp.append(p)
            ds.append((a - p).abs().sum().detach())  # Eq. 9
        if za:
            anchors += za
            positives += zp
            weights.append(sgd_weights(torch.stack(ds), alpha_s))
    if not anchors:
        return content.new_zeros(())
    return contrastive_loss(torch.stack(anchors), torch.stack(positives), tau, torch.cat(weights))


def ggd_loss(content: torch.Tensor, translated_content: torch.Tensor, *, tau: float = 0.07) -> torch.Tensor:
    """Eq. 12: image-level contrastive loss on whole content maps (``w = 1``)."""
    return contrastive_loss(content.flatten(1), translated_content.flatten(1), tau)


# -- the translator -------------------------------------------------------------------------------------
class HiFiSynTranslator(TwoWayTranslatorMixin, Translator):
    """HiFi-Syn: ``source -> target`` by content of the source and memory-bank attributes of the target."""

    def __init__(self, spec: TranslatorSpec, config: Mapping[str, Any]):
        super().__init__(spec, config)
        self._build_parts()

    def _build_parts(self) -> None:
        """Every network and loss setting, from :attr:`config` (also after :meth:`settle`)."""
        c = self.config
        self.source, self.target = c["source"], c["target"]
        self.net = DisentangleNet((self.source, self.target), width=c["width"], n_down=c["n_down"],
                                  n_res=c["n_res"], attr_dim=c["attr_dim"], disc_width=c["disc_width"],
                                  disc_layers=c["disc_layers"], attr_spatial=True,
                                  attr_injection=c.get("attr_injection") or "concat",
                                  gan_mode=c.get("gan_mode", "bce"),
                                  other_negatives=bool(c.get("other_negatives")))
        tau = c.get("read_tau")
        self.bank = BrainMemoryBank(self.net.content_channels, c["attr_dim"], (self.source, self.target),
                                    structure_items=c["structure_items"], global_items=c["global_items"],
                                    alpha_p=c["alpha_p"], unlabelled_read=c["unlabelled_read"],
                                    temperature=1.0 if tau is None else tau)
        self.lambdas = dict(DEFAULT_LAMBDAS)
        self.lambdas.update(c["lambdas"])

    def _attr(self, content: torch.Tensor, modality: str, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.config["use_bmb"]:
            return self.bank.read(content, modality, labels)
        return self.net.mean_attribute(modality, content.shape[0])

    def translate(self, x: torch.Tensor, *, steps: int | None = None,
                  generator: torch.Generator | None = None) -> TranslationOutput:
        """Translate ``source`` slices ``[B, 1, H, W]`` to ``target``; no labels and no target image needed."""
        check_batch(x, 1, self.spec.size_multiple, f"{self.source} slices")
        content = self.net.enc_c[self.source](x)
        y = self.net.decode(content, self._attr(content, self.target), self.target)
        return TranslationOutput(image=y.clamp(-1.0, 1.0))

    # -- training -------------------------------------------------------------------------------------
    def forward_train(self, x_i: torch.Tensor, x_j: torch.Tensor, labels_i: torch.Tensor | None = None,
                      labels_j: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One unpaired step's forward pass: ``x_i`` of ``source``, ``x_j`` of ``target``, optional label maps.

        Labels (``[B, H, W]`` or ``[B, 1, H, W]`` integers at image size) are used only when ``use_labels``.
        """
        size = (x_i.shape[-2] // self.net.size_multiple, x_i.shape[-1] // self.net.size_multiple)
        use = self.config["use_labels"]
        c_attr = self.config.get("cycle_attr", "bank")
        lab = {self.target: _labels_on(labels_i, size) if use and labels_i is not None else None,
               self.source: _labels_on(labels_j, size) if use and labels_j is not None else None}

        def reader(labels: Mapping[str, torch.Tensor | None]):
            return lambda content, target: self._attr(content, target, labels[target])

        # a translation's content carries the labels of the image it came from: x_i's content (and, in the
        # cycle, fake_j's content) is x_i's anatomy, read into the other modality resp. back into the source
        back = {self.source: lab[self.target], self.target: lab[self.source]}
        out = self.net.forward_pair(x_i, x_j, cross_attr=reader(lab),
                                    cycle_attr=reader(back) if c_attr == "bank" else None)
        out["labels_i"] = lab[self.target]
        out["labels_j"] = lab[self.source]
        return out

    def generator_losses(self, out: Mapping[str, torch.Tensor], *,
                         generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Eq. 13-17 for encoders and generators; ``"total"`` is Eq. 17 (a weight 0 switches a term off)."""
        lam = self.lambdas
        c = self.config
        base = self.net.generator_losses(out, lambda_rec=lam["rec"], lambda_cyc=lam["cyc"],
                                         lambda_adv=lam["domain"], lambda_content=lam["content"], lambda_kl=0.0)
        zero = out["x_i"].new_zeros(())
        t1, t2, t3 = c["tau"]
        pgd = zero
        if lam["pgd"]:
            pgd = pgd_loss(out["zc_i"], out["zc_fj"], tau=t1, max_pixels=c["max_pixels"], generator=generator) + \
                pgd_loss(out["zc_j"], out["zc_fi"], tau=t1, max_pixels=c["max_pixels"], generator=generator)
        sgd = zero
        if lam["sgd"]:
            n = self.bank.n_structures
            if out.get("labels_i") is not None:
                sgd = sgd + sgd_loss(out["zc_i"], out["zc_fj"], out["labels_i"], n_structures=n, tau=t2,
                                     alpha_s=c["alpha_s"])
            if out.get("labels_j") is not None:
                sgd = sgd + sgd_loss(out["zc_j"], out["zc_fi"], out["labels_j"], n_structures=n, tau=t2,
                                     alpha_s=c["alpha_s"])
        ggd = ggd_loss(out["zc_i"], out["zc_fj"], tau=t3) + ggd_loss(out["zc_j"], out["zc_fi"], tau=t3) \
            if lam["ggd"] else zero
        # Eq. 15 content, Eq. 16 domain, Eq. 13 cross-cycle, Eq. 14 self-reconstruction, Eq. 7 / 11 / 12
        losses = {"content": base["content"], "domain": base["adv"], "cyc": base["cyc"], "rec": base["rec"],
                  "pgd": pgd, "sgd": sgd, "ggd": ggd}
        losses["total"] = base["total"] + lam["pgd"] * pgd + lam["sgd"] * sgd + lam["ggd"] * ggd  # Eq. 17
        return losses

    def discriminator_losses(self, out: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Eq. 15-16 for the modality and content discriminators."""
        return self.net.discriminator_losses(out, use_content=bool(self.lambdas["content"]))

    @torch.no_grad()
    def update_memory(self, out: Mapping[str, torch.Tensor]) -> None:
        """Eq. 4-6 with this step's content pixels (queries) and attribute pixels (values) of both inputs."""
        if not self.config["use_bmb"]:
            return
        mi, mj = self.source, self.target
        q = {mi: _pixels(out["zc_i"]), mj: _pixels(out["zc_j"])}
        a = {mi: _pixels(out["za_i"]), mj: _pixels(out["za_j"])}
        lab = {mi: out.get("labels_i"), mj: out.get("labels_j")}
        lab = {m: (None if v is None else v.reshape(-1)) for m, v in lab.items()}
        self.bank.update(q, a, lab)


@register_translator("hifi-syn")
def hifi_syn(*, source: str = "T1", target: str = "T2", preset: str | None = None, width: int | None = None,
             n_down: int | None = None, n_res: int | None = None, attr_dim: int | None = None,
             disc_width: int | None = None, disc_layers: int | None = None,
             structure_items: Sequence[int] = (2, 2, 3, 3), global_items: int | None = None,
             alpha_p: float = 0.01, alpha_s: float = 0.5, tau: float | Sequence[float] = 0.07,
             max_pixels: int = 256, unlabelled_read: str = "global", cycle_attr: str = "bank", use_bmb: bool = True,
             use_labels: bool = True, lambdas: Mapping[str, float] | None = None, attr_injection: str | None = None,
             read_tau: float | None = None, gan_mode: str = "bce", other_negatives: bool | None = None) -> HiFiSynTranslator:
    """Build HiFi-Syn with random weights.

    Parameters
    ----------
    source, target : str
        The translation direction (the backbone holds both modalities either way; one checkpoint serves both
        directions: ``load_translator(path, direction="T2->T1")``).
    preset : {"paper", "cpu"} or None
        Size defaults (:data:`PRESETS`); None is "paper". Explicit sizes override it.
    width, n_down, n_res, attr_dim, disc_width, disc_layers : int or None
        Backbone sizes (see :class:`~napari_medtrans.translators.disentangle.DisentangleNet`).
    structure_items, global_items, alpha_p, unlabelled_read
        Brain Memory Bank layout and update rate (:class:`BrainMemoryBank`).
    alpha_s : float
        Smoothness of the SGD rank weights (Eq. 10).
    tau : float or three floats
        Temperatures ``tau1, tau2, tau3`` of Eq. 7, 11, 12.
    max_pixels : int
        Pixels sampled per direction for PGD.
    cycle_attr : {"bank", "encoder"}
        Attribute of the cross-cycle's second translation: read from the memory bank (default) or the input's
        own attribute map (see the module notes).
    use_bmb, use_labels : bool
        Ablations (Table 5): without the bank the translation takes the stored mean attribute of the target;
        without labels every pixel reads the global items only and SGD is off.
    lambdas : mapping
        Overrides of Eq. 17's weights, keys ``content, domain, cyc, rec, pgd, sgd, ggd``.
    attr_injection : {"adain", "concat"} or None
        How the generators take the attribute. None builds "concat", what checkpoints written before the key
        existed hold; the training recipe sets "adain" (see the module notes).
    read_tau : float or None
        Temperature of the memory read (Eq. 1). None builds 1 (old checkpoints); the recipe sets 0.07.
    gan_mode : {"bce", "lsgan"}
        Loss of the modality and content discriminators (BCE, Eq. 15-16, the default); training only.
    """
    if gan_mode not in GAN_MODES:
        raise UnknownChoiceError("HiFi-Syn GAN loss", str(gan_mode), GAN_MODES)
    if attr_injection is not None and attr_injection not in ATTR_INJECTIONS:
        raise UnknownChoiceError("HiFi-Syn attribute injection", str(attr_injection), ATTR_INJECTIONS)
    if read_tau is not None and not (isinstance(read_tau, (int, float)) and not isinstance(read_tau, bool)
                                     and math.isfinite(read_tau) and read_tau > 0):
        raise ValueError(f'Argument "read_tau" must be a positive number or None, got {read_tau!r}.')
    if preset is not None and preset not in PRESETS:
        raise UnknownChoiceError("HiFi-Syn preset", str(preset), list(PRESETS))
    cfg = dict(PRESETS[preset or "paper"])
    for k, v in dict(width=width, n_down=n_down, n_res=n_res, attr_dim=attr_dim, disc_width=disc_width,
                     disc_layers=disc_layers).items():
        if v is not None:
            cfg[k] = int(v)
    if source == target:
        raise ValueError(f'Arguments "source" and "target" must differ, both are {source!r}.')
    taus = [float(tau)] * 3 if isinstance(tau, (int, float)) else [float(t) for t in tau]
    if len(taus) != 3 or any(not t > 0 or not math.isfinite(t) for t in taus):
        raise ValueError(f'Argument "tau" must be one positive number or three, got {tau!r}.')
    if cycle_attr not in CYCLE_ATTRS:
        raise UnknownChoiceError("HiFi-Syn cycle attribute", str(cycle_attr), CYCLE_ATTRS)
    lam = dict(lambdas or {})
    unknown = set(lam) - set(DEFAULT_LAMBDAS)
    if unknown:
        raise UnknownChoiceError("HiFi-Syn loss weight", sorted(unknown)[0], list(DEFAULT_LAMBDAS))
    cfg.update(source=str(source), target=str(target), preset=preset, structure_items=[int(n) for n in structure_items],
               global_items=None if global_items is None else int(global_items), alpha_p=float(alpha_p),
               alpha_s=float(alpha_s), tau=taus, max_pixels=int(max_pixels), unlabelled_read=str(unlabelled_read),
               cycle_attr=str(cycle_attr), use_bmb=bool(use_bmb), use_labels=bool(use_labels),
               lambdas={k: float(v) for k, v in lam.items()}, attr_injection=attr_injection,
               read_tau=None if read_tau is None else float(read_tau), gan_mode=str(gan_mode),
               other_negatives=None if other_negatives is None else bool(other_negatives))
    if not cfg["use_labels"]:
        cfg["lambdas"].setdefault("sgd", 0.0)
    spec = TranslatorSpec(method="hifi-syn", inputs=(cfg["source"],), outputs=(cfg["target"],),
                          size_multiple=2 ** cfg["n_down"], paired=False, stochastic=False)
    return HiFiSynTranslator(spec, cfg)
