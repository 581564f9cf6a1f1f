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


def reconstruction_size(image_size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """Target (h, w) with `short_side` pixels on the short side and the image's aspect ratio.

    A downsampled target keeps the decoders cheap; keeping the aspect ratio keeps panoramas
    (CVUSA's 1:5.5 street views) panoramas.
    """
    height, width = int(image_size[0]), int(image_size[1])
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


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


class CVD(nn.Module):
    """Content-Viewpoint Disentanglement over a backbone's feature map (B, d, h, w).

    Content zc has round(alpha * d) channels and viewpoint zv the remaining d - round(alpha * d);
    `squeeze=False` is the paper's "no squeeze" variant where both keep d channels.
    `separate_branches=True` gives each branch its own split convs (for models whose two
    encoders do not share weights); the decoders are always one per branch (D^q, D^s).
    `viewpoint=False` / `decoders=False` leave out modules the enabled losses would not train
    (an unused parameter breaks DDP), e.g. for the "w/o constraints" ablation.
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
    ) -> None:
        super().__init__()
        if init not in SPLIT_INITS:
            raise ValueError(f"init must be one of {SPLIT_INITS}, got '{init}'")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
        self.content_channels = round(alpha * in_channels) if squeeze else in_channels
        self.viewpoint_channels = in_channels - self.content_channels if squeeze else in_channels
        if self.content_channels < 1 or self.viewpoint_channels < 1:
            raise ValueError(f"alpha={alpha} leaves no channels for a factor of a {in_channels}-channel map")
        self.recon_size = recon_size
        keys = BRANCHES if separate_branches else ("shared",)
        self.separate_branches = separate_branches
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
        self.decoders = (
            nn.ModuleDict(
                {
                    branch: Decoder(
                        self.content_channels, self.viewpoint_channels, decoder_channels, decoder_stages
                    )
                    for branch in BRANCHES
                }
            )
            if decoders
            else None
        )

        if init == "rotation":
            self._init_as_rotation()

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

    def content_projection(self, branch: str = "query") -> SplitProjection:
        """f_c of `branch`: the only CVD module retrieval needs."""
        return self.content_convs[self._key(branch)]

    def content(self, z: torch.Tensor, branch: str = "query") -> torch.Tensor:
        """Content map zc, the retrieval representation."""
        return self.content_projection(branch)(z)

    def split(self, z: torch.Tensor, branch: str = "query") -> tuple[torch.Tensor, torch.Tensor | None]:
        """(zc, zv); zv is None when the model was built without a viewpoint conv."""
        zv = self.viewpoint_convs[self._key(branch)](z) if self.viewpoint_convs is not None else None
        return self.content(z, branch), zv

    def reconstruct(
        self,
        zc_other: torch.Tensor,
        zv_own: torch.Tensor,
        branch: str,
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Eq. 4: image of `branch` from the other view's content and `branch`'s own viewpoint.

        `size` defaults to `recon_size` on the short side with the aspect of zv's grid.
        """
        if self.decoders is None:
            raise RuntimeError("this CVD module was built without decoders (reconstruction disabled)")
        self._key(branch)
        if size is None:
            size = reconstruction_size(tuple(zv_own.shape[-2:]), self.recon_size)
        return self.decoders[branch](zc_other, zv_own, size)
