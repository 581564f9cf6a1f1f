"""The CVD plug-in (paper section 3.2): content/viewpoint split and the cross-view decoders.

Training only, apart from the content projection: retrieval runs the backbone, the content conv
and the baseline's head; the viewpoint conv and the decoders exist to shape the content space
through the independence (eq. 3) and reconstruction (eq. 4-5) constraints.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BRANCHES = ("query", "satellite")


class SplitProjection(nn.Conv2d):
    """One of the two parallel 3x3 convs that project the feature map z onto a factor.

    `global_mean(z)` equals `self(z).mean((2, 3))` exactly but costs k*k*C_in*C_out per image
    instead of h*w*k*k*C_in*C_out: the mean of a zero-padded stride-1 convolution is the kernel
    applied once to the k x k means of z's shifted windows. Heads that start with a global mean
    (GAP) use it so that CVD adds almost nothing at inference.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"split kernel_size must be odd (same-size output), got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def global_mean(self, z: torch.Tensor) -> torch.Tensor:
        """Mean over positions of this conv's output, (B, C_out), without the full-map conv."""
        k = self.kernel_size[0]
        pad = k // 2
        height, width = z.shape[-2:]
        # Tap (i, j) of the kernel sees z shifted by (i - pad, j - pad), zeros outside: its mean
        # input is the sum of z over the rows/columns that stay inside, divided by h*w.
        # Separable sums on the (B, h, w, C) view (free for channels_last maps).
        nhwc = z.permute(0, 2, 3, 1)
        row_sums = [nhwc[:, max(0, i - pad) : height + min(0, i - pad)].sum(dim=1) for i in range(k)]
        window_sums = torch.stack(
            [
                rows[:, max(0, j - pad) : width + min(0, j - pad)].sum(dim=1)
                for rows in row_sums
                for j in range(k)
            ],
            dim=1,
        )  # (B, k*k, C_in), taps in (i, j) order
        window_means = window_sums / (height * width)
        # One output position of the conv is a matrix product; order the weight like the taps.
        # permute+reshape is a view for a channels_last weight and one copy otherwise.
        weight = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)  # (C_out, k*k*C_in)
        return F.linear(window_means.flatten(1), weight, self.bias)


SPLIT_INITS = ("default", "rotation")
CENTRE_MODES = ("none", "inference", "batch", "running")


def centre_mode(value: str | bool) -> str:
    """``cvd.centre`` as one of CENTRE_MODES (true / false: "batch" / "none", as first written)."""
    if isinstance(value, bool):
        return "batch" if value else "none"
    if value not in CENTRE_MODES:
        raise ValueError(f"centre must be one of {CENTRE_MODES}, got {value!r}")
    return value


SPLITS = ("conv", "complement")
RECONSTRUCTION_TARGETS = ("image", "feature", "pooled_feature")


class ComplementSplit(nn.Module):
    """Viewpoint = the coordinates of z in a learned k-dim subspace; content = the rest of z.

    With Q an orthonormal basis (d x k) of the subspace spanned by ``basis``, at every position
    zv = Q^T z and zc = z - Q Q^T z, so [zc, zv] loses nothing of z and the two factors live in
    orthogonal subspaces. At initialisation content is z minus a random k-dim subspace (k << d),
    so retrieval starts where the baseline does instead of behind a random d x d/2 projection;
    the split has d*k parameters instead of 2 * 9 * d * d/2 (see docs/cvd_module.md).
    Linear, so the pooled content of a global-mean head is computed on the pooled map.
    """

    def __init__(self, channels: int, viewpoint_channels: int) -> None:
        super().__init__()
        if not 1 <= viewpoint_channels < channels:
            raise ValueError(
                f"viewpoint_channels must lie in [1, {channels}) for a {channels}-channel map, "
                f"got {viewpoint_channels}"
            )
        self.in_channels = channels
        self.out_channels = channels
        self.viewpoint_channels = viewpoint_channels
        self.basis = nn.Parameter(nn.init.orthogonal_(torch.empty(channels, viewpoint_channels)))

    def orthonormal_basis(self) -> torch.Tensor:
        """Q (d, k): orthonormal columns spanning ``basis`` (at least float32: QR has no half kernels)."""
        basis = self.basis if self.basis.dtype in (torch.float32, torch.float64) else self.basis.float()
        return torch.linalg.qr(basis).Q

    @staticmethod
    def coordinates(z: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """Q^T z at every position: (B, k, h, w), or (B, k) for vectors (B, d)."""
        return z @ basis if z.ndim == 2 else torch.einsum("bchw,ck->bkhw", z, basis)

    @staticmethod
    def remove_subspace(z: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """z - Q Q^T z at every position."""
        coordinates = ComplementSplit.coordinates(z, basis)
        if z.ndim == 2:
            return z - coordinates @ basis.T
        return z - torch.einsum("bkhw,ck->bchw", coordinates, basis)

    def viewpoint(self, z: torch.Tensor) -> torch.Tensor:
        """zv = Q^T z."""
        return self.coordinates(z, self.orthonormal_basis().to(z.dtype))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """zc = z - Q Q^T z (the content map, or content vectors for (B, d) input)."""
        return self.remove_subspace(z, self.orthonormal_basis().to(z.dtype))

    def global_mean(self, z: torch.Tensor) -> torch.Tensor:
        """Mean over positions of the content map, (B, d): the projection commutes with the mean."""
        return self(z.mean(dim=(2, 3)))


class BranchContent(nn.Module):
    """f_c of one branch as one module: the branch's view mean removed (when CVD centres), then the
    content projection. What retrieval and export run; ``global_mean`` keeps the pooled shortcut."""

    def __init__(self, projection: SplitProjection | ComplementSplit, mean: torch.Tensor | None) -> None:
        super().__init__()
        self.projection = projection
        self.centred = mean is not None
        if mean is not None:
            self.register_buffer("mean", mean, persistent=False)
        if isinstance(projection, ComplementSplit):
            # Q computed once here: retrieval and ONNX export then need no QR (ONNX has none)
            self.register_buffer("basis", projection.orthonormal_basis().detach(), persistent=False)

    def _centre(self, z: torch.Tensor) -> torch.Tensor:
        if not self.centred:
            return z
        mean = self.mean.to(z.dtype)
        return z - (mean[None, :, None, None] if z.ndim == 4 else mean[None])

    @property
    def conv(self) -> nn.Conv2d | None:
        """The plain conv when that is all this is (no centring, conv split): part heads that pool
        linearly apply it to pooled windows instead of the whole map."""
        return self.projection if isinstance(self.projection, nn.Conv2d) and not self.centred else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = self._centre(z)
        if isinstance(self.projection, ComplementSplit):
            return ComplementSplit.remove_subspace(z, self.basis.to(z.dtype))
        return self.projection(z)

    def global_mean(self, z: torch.Tensor) -> torch.Tensor:
        """Mean over positions of the content map, (B, C_out), via the projection's own shortcut."""
        if isinstance(self.projection, ComplementSplit):
            return self(z.mean(dim=(2, 3)))
        return self.projection.global_mean(self._centre(z))


def reconstruction_size(image_size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """Target (h, w) with `short_side` pixels on the short side and the image's aspect ratio.

    A downsampled target keeps the decoders cheap; keeping the aspect ratio keeps panoramas
    (CVUSA's 1:5.5 street views) panoramas.
    """
    height, width = int(image_size[0]), int(image_size[1])
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _global_mean(local_mean: torch.Tensor) -> torch.Tensor:
    """The mean over every process's batch (equal batch sizes, as the engine ensures), with
    gradient, so that centring on N processes equals centring on one (unlike BatchNorm's)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local_mean
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(local_mean) / dist.get_world_size()


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class Decoder(nn.Module):
    """D^u: reconstructs a view's image from the other view's content and its own viewpoint.

    Deliberately light (see docs/cvd_module.md): a 1x1 fuse conv at a base grid of
    target/2**stages, then `stages` x (nearest x2 upsample, 3x3 conv, GroupNorm, ReLU) with
    halving widths, and a 3x3 conv to RGB. Its cost does not depend on the backbone or the input
    size. GroupNorm rather than BatchNorm: each image is rebuilt from its own statistics only, so
    the reconstruction loss is the same whether a batch runs on one process or is split over
    several (and small per-GPU batches do not add noise).
    """

    def __init__(
        self, content_channels: int, viewpoint_channels: int, width: int = 64, stages: int = 3
    ) -> None:
        super().__init__()
        self.stages = stages
        widths = [max(width // 2**i, 16) for i in range(stages + 1)]
        self.fuse = nn.Sequential(
            nn.Conv2d(content_channels + viewpoint_channels, widths[0], 1, bias=False),
            _group_norm(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.upsample = nn.ModuleList(
            nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=False),
                _group_norm(widths[i + 1]),
                nn.ReLU(inplace=True),
            )
            for i in range(stages)
        )
        self.to_image = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, zc_other: torch.Tensor, zv_own: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if zc_other.shape[-2:] != zv_own.shape[-2:]:
            # The two views' grids differ (panorama vs square tile): bring the content to the
            # grid of the viewpoint, which carries the layout of the image being rebuilt.
            zc_other = F.interpolate(zc_other, size=zv_own.shape[-2:], mode="bilinear", align_corners=False)
        hybrid = torch.cat([zc_other, zv_own], dim=1)
        factor = 2**self.stages
        base = (math.ceil(size[0] / factor), math.ceil(size[1] / factor))
        if base != tuple(hybrid.shape[-2:]):
            if base[0] <= hybrid.shape[-2] and base[1] <= hybrid.shape[-1]:
                hybrid = F.adaptive_avg_pool2d(hybrid, base)
            else:
                hybrid = F.interpolate(hybrid, size=base, mode="bilinear", align_corners=False)
        x = self.fuse(hybrid)
        for stage in self.upsample:
            x = stage(x)
        image = self.to_image(x)
        if tuple(image.shape[-2:]) != tuple(size):
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        return image


class FeatureDecoder(nn.Module):
    """D^u at the feature level: the own view's (detached) backbone map from the other view's
    content map and the own view's pooled viewpoint vector.

    The viewpoint enters as one vector broadcast over the grid, so the layout and the scene can
    only come from the content: a decoder that ignored the content would be left with a
    per-image constant (the swap test of ``cvd analyze`` checks this). 1x1 fuse, one 3x3 conv,
    1x1 to the backbone's width; GroupNorm for the reason given in :class:`Decoder`.
    """

    def __init__(
        self, content_channels: int, viewpoint_channels: int, out_channels: int, width: int = 256
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(content_channels + viewpoint_channels, width, 1, bias=False),
            _group_norm(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            _group_norm(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_channels, 1),
        )

    def forward(self, zc_other: torch.Tensor, zv_own: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(zc_other.shape[-2:]) != tuple(size):
            zc_other = F.interpolate(zc_other, size=size, mode="bilinear", align_corners=False)
        viewpoint = zv_own.mean(dim=(2, 3)) if zv_own.ndim == 4 else zv_own
        viewpoint = viewpoint[:, :, None, None].expand(-1, -1, *size)
        return self.net(torch.cat([zc_other, viewpoint.to(zc_other.dtype)], dim=1))


class PooledFeatureDecoder(nn.Module):
    """D^u on pooled vectors: the own view's (detached) pooled backbone feature GAP(z) from the
    other view's pooled content and the own view's pooled viewpoint.

    ``width=0`` makes it affine, D(c, v) = A c + B v + b: then the best viewpoint subspace of a
    :class:`ComplementSplit` is the principal subspace of what the other view's content cannot
    predict of this view (the cross-view residual), which is what the split removes from the
    retrieval embedding. ``width > 0`` is a two-layer MLP of that hidden width.
    """

    def __init__(
        self,
        content_channels: int,
        viewpoint_channels: int,
        out_channels: int,
        width: int = 256,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        inputs = content_channels + viewpoint_channels
        if width == 0:
            self.net: nn.Module = nn.Linear(inputs, out_channels)
        else:
            self.net = nn.Sequential(
                nn.Linear(inputs, width), nn.LayerNorm(width), nn.GELU(), nn.Linear(width, out_channels)
            )
        if zero_init:
            # start from predicting nothing (then the mean, through the bias): a d x d map fitted
            # on a few hundred images in a few hundred steps otherwise keeps much of its random
            # start, and on held-out images does worse than the mean
            last = self.net if isinstance(self.net, nn.Linear) else self.net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(
        self, zc_other: torch.Tensor, zv_own: torch.Tensor, size: tuple[int, ...] = ()
    ) -> torch.Tensor:
        content = zc_other.mean(dim=(2, 3)) if zc_other.ndim == 4 else zc_other
        viewpoint = zv_own.mean(dim=(2, 3)) if zv_own.ndim == 4 else zv_own
        return self.net(torch.cat([content, viewpoint.to(content.dtype)], dim=1))


class CVD(nn.Module):
    """Content-Viewpoint Disentanglement over a backbone's feature map (B, d, h, w).

    ``split="conv"`` is the paper's module: two parallel k x k convs; content zc has
    round(alpha * d) channels and viewpoint zv the remaining d - round(alpha * d) (`squeeze=False`
    is the paper's "no squeeze" variant where both keep d channels). ``split="complement"`` is
    :class:`ComplementSplit`: zv = the ``viewpoint_channels`` coordinates of z in a learned
    subspace, zc = z without them (d channels).
    ``reconstruct="image"`` is eq. 4 as published (:class:`Decoder` to the downsampled image);
    ``"feature"`` rebuilds the own view's detached backbone map from the other view's content and
    the own pooled viewpoint (:class:`FeatureDecoder`), ``"pooled_feature"`` its pooled vector
    GAP(z) from pooled factors (:class:`PooledFeatureDecoder`).
    `separate_branches=True` gives each branch its own split (for models whose two encoders do
    not share weights); the decoders are always one per branch (D^q, D^s).
    `viewpoint=False` / `decoders=False` leave out modules the enabled losses would not train
    (an unused parameter breaks DDP), e.g. for the "w/o constraints" ablation.
    The keyword defaults are the paper variant's values (``cvd.variant=paper`` in
    cvd_variants.yaml, which is where the toolkit reads them from; a test keeps the two equal):
    the toolkit always passes every argument from the resolved config (``build_cvd``).
    """

    def __init__(
        self,
        in_channels: int,
        alpha: float = 0.5,
        squeeze: bool = True,
        recon_size: int = 32,
        decoder_channels: int = 64,
        decoder_stages: int = 3,
        kernel_size: int = 3,
        separate_branches: bool = False,
        viewpoint: bool = True,
        decoders: bool = True,
        init: str = "default",
        split: str = "conv",
        viewpoint_channels: int = 64,
        reconstruct: str = "image",
        centre: str | bool = "none",
        centre_momentum: float = 0.1,
        detach_backbone: bool = False,
        decoder_zero_init: bool = False,
        retrieval_trains_split: bool = True,
    ) -> None:
        super().__init__()
        if init not in SPLIT_INITS:
            raise ValueError(f"init must be one of {SPLIT_INITS}, got '{init}'")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
        if reconstruct not in RECONSTRUCTION_TARGETS:
            raise ValueError(f"reconstruct must be one of {RECONSTRUCTION_TARGETS}, got '{reconstruct}'")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
        self.split_kind = split
        self.reconstruct_kind = reconstruct
        self.in_channels = in_channels
        if split == "complement":
            # at most a quarter of z: a viewpoint subspace must leave the content most of the map
            # (only tiny test backbones, d < 256, reach this bound with the default 64)
            self.content_channels = in_channels
            self.viewpoint_channels = max(1, min(int(viewpoint_channels), in_channels // 4))
        else:
            self.content_channels = round(alpha * in_channels) if squeeze else in_channels
            self.viewpoint_channels = in_channels - self.content_channels if squeeze else in_channels
        if self.content_channels < 1 or self.viewpoint_channels < 1:
            raise ValueError(f"alpha={alpha} leaves no channels for a factor of a {in_channels}-channel map")
        self.recon_size = recon_size
        self.decoder_zero_init = bool(decoder_zero_init)
        keys = BRANCHES if separate_branches else ("shared",)
        self.separate_branches = separate_branches
        if split == "complement":
            # one module gives both factors; it is trained by retrieval alone if no constraint is on
            self.content_convs = nn.ModuleDict(
                {key: ComplementSplit(in_channels, self.viewpoint_channels) for key in keys}
            )
            self.viewpoint_convs = None
        else:
            self.content_convs = nn.ModuleDict(
                {key: SplitProjection(in_channels, self.content_channels, kernel_size) for key in keys}
            )
            self.viewpoint_convs = (
                nn.ModuleDict(
                    {key: SplitProjection(in_channels, self.viewpoint_channels, kernel_size) for key in keys}
                )
                if viewpoint or decoders
                else None
            )
        self.has_viewpoint = split == "complement" or self.viewpoint_convs is not None
        # Per-branch mean of the pooled map: the part of z that every image of a view shares, the
        # plainest viewpoint attribute there is. Removed before the split at inference (the
        # running mean over the training batches), so content carries no view offset. In
        # training: "inference" leaves z as it is (the mean is only tracked); "batch" removes the
        # batch's mean (with gradient, as BatchNorm does); "running" the running mean.
        self.centre_mode = centre_mode(centre)
        self.centre = self.centre_mode != "none"
        self.centre_momentum = float(centre_momentum)
        # True: the constraints (eq. 3-5) shape the CVD module only; the backbone learns from
        # retrieval alone (the split it feeds is still trained by both)
        self.detach_backbone = bool(detach_backbone)
        # False: the viewpoint subspace is learned by the constraints alone; retrieval's loss
        # trains the backbone through the split but not the split itself
        if not retrieval_trains_split and split != "complement":
            raise ValueError("retrieval_trains_split=False applies to the complement split only")
        self.retrieval_trains_split = bool(retrieval_trains_split)
        if self.centre:
            self.register_buffer("view_means", torch.zeros(len(BRANCHES), in_channels))
            self.register_buffer("view_mean_updates", torch.zeros(len(BRANCHES), dtype=torch.long))
        self.decoders = (
            nn.ModuleDict({branch: self._decoder(decoder_channels, decoder_stages) for branch in BRANCHES})
            if decoders
            else None
        )

        if init == "rotation":
            if split != "conv":
                raise ValueError("init 'rotation' applies to the conv split only")
            self._init_as_rotation()

    def _decoder(self, width: int, stages: int) -> nn.Module:
        if self.reconstruct_kind == "pooled_feature":
            return PooledFeatureDecoder(
                self.content_channels,
                self.viewpoint_channels,
                self.in_channels,
                width,
                self.decoder_zero_init,
            )
        if self.reconstruct_kind == "feature":
            return FeatureDecoder(self.content_channels, self.viewpoint_channels, self.in_channels, width)
        return Decoder(self.content_channels, self.viewpoint_channels, width, stages)

    @torch.no_grad()
    def _init_as_rotation(self) -> None:
        """Start the split as a rotation of z: centre taps = the rows of one random orthogonal
        matrix, shared out between content and viewpoint, other taps and biases zero.

        Then (zc, zv) is z in another basis (nothing lost: with squeeze the two factors have
        exactly d rows between them), content and viewpoint start in orthogonal subspaces, and
        retrieval with GAP(zc) starts from a random projection of the backbone's GAP feature,
        which keeps its similarities (Johnson-Lindenstrauss) instead of a random 3x3 mixing.
        The paper does not say how the split is initialised; "default" is PyTorch's conv init.
        """
        keys = list(self.content_convs)
        for key in keys:
            convs = [self.content_convs[key]]
            if self.viewpoint_convs is not None:
                convs.append(self.viewpoint_convs[key])
            rows = sum(conv.out_channels for conv in convs)
            in_channels = convs[0].in_channels
            basis = torch.empty(max(rows, in_channels), in_channels)
            nn.init.orthogonal_(basis)  # orthonormal columns; its first `rows` rows when rows <= d
            if rows > in_channels:  # no squeeze: the factors cannot share one basis
                basis = torch.cat([basis, nn.init.orthogonal_(torch.empty(rows - in_channels, in_channels))])
            start = 0
            for conv in convs:
                centre = conv.kernel_size[0] // 2
                conv.weight.zero_()
                conv.weight[:, :, centre, centre] = basis[start : start + conv.out_channels]
                conv.bias.zero_()
                start += conv.out_channels

    def _key(self, branch: str) -> str:
        if branch not in BRANCHES:
            raise ValueError(f"branch must be one of {BRANCHES}, got '{branch}'")
        return branch if self.separate_branches else "shared"

    def content_projection(self, branch: str = "query") -> BranchContent:
        """f_c of `branch` (its centring included): the only CVD module retrieval needs."""
        mean = self.view_means[BRANCHES.index(branch)] if self.centre else None
        return BranchContent(self.content_convs[self._key(branch)], mean)

    def centred(self, z: torch.Tensor, branch: str, for_retrieval: bool = True) -> torch.Tensor:
        """z minus its view's mean; at inference the running (or measured) mean.

        In training, retrieval's pass (``for_retrieval``) updates the running mean with the
        batch's and removes the batch's mean (``centre="batch"``), the running mean
        (``"running"``) or nothing (``"inference"``: retrieval trains on z, as the baseline
        does). The constraints' second pass over the same batch (``for_retrieval=False``)
        leaves the running mean alone and is centred by the batch's mean (``"batch"``) or by the
        running mean, as inference will be.
        """
        if not self.centre:
            return z
        index = BRANCHES.index(branch)
        if not self.training:
            return z - self.view_means[index].to(z.dtype)[None, :, None, None]
        if for_retrieval:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.centre_mode == "batch"):
                batch_mean = _global_mean(z.float().mean(dim=(0, 2, 3)))
            with torch.no_grad():
                first = self.view_mean_updates[index] == 0
                momentum = 1.0 if bool(first) else self.centre_momentum
                self.view_means[index].lerp_(batch_mean.detach(), momentum)
                self.view_mean_updates[index] += 1
            if self.centre_mode == "inference":
                return z
        elif self.centre_mode == "batch":
            batch_mean = _global_mean(z.float().mean(dim=(0, 2, 3)))
        mean = batch_mean if self.centre_mode == "batch" else self.view_means[index].clone()
        return z - mean.to(z.dtype)[None, :, None, None]

    def content(self, z: torch.Tensor, branch: str = "query") -> torch.Tensor:
        """Content map zc, the retrieval representation."""
        return self.content_convs[self._key(branch)](self.centred(z, branch))

    def split(
        self, z: torch.Tensor, branch: str = "query", for_retrieval: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(zc, zv); zv is None when the model was built without a viewpoint conv.

        ``for_retrieval=False`` is the constraints' second split of a batch: it leaves the
        running view mean alone, is centred as inference will be, and trains the split's
        subspace even where retrieval does not (``retrieval_trains_split=False``).
        """
        key = self._key(branch)
        z = self.centred(z, branch, for_retrieval)
        if self.split_kind == "complement":
            module = self.content_convs[key]
            basis = module.orthonormal_basis().to(z.dtype)
            trained = self.retrieval_trains_split or not for_retrieval
            content = module.remove_subspace(z, basis if trained else basis.detach())
            return content, module.coordinates(z, basis)
        zv = self.viewpoint_convs[key](z) if self.viewpoint_convs is not None else None
        return self.content_convs[key](z), zv

    def reconstruct(
        self,
        zc_other: torch.Tensor,
        zv_own: torch.Tensor,
        branch: str,
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Eq. 4: image of `branch` from the other view's content and `branch`'s own viewpoint
        (with ``reconstruct="feature"``: `branch`'s backbone map, `size` = its grid).

        `size` defaults to `recon_size` on the short side with the aspect of zv's grid.
        """
        if self.decoders is None:
            raise RuntimeError("this CVD module was built without decoders (reconstruction disabled)")
        self._key(branch)
        if size is None:
            size = reconstruction_size(tuple(zv_own.shape[-2:]), self.recon_size)
        return self.decoders[branch](zc_other, zv_own, size)
