"""Cross-attention conditioning: a condition as a token sequence the UNet attends to.

In a latent diffusion model (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models", Sec. 3.3) the condition ``y`` enters every attention block of the UNet
through cross-attention: with the UNet's features ``phi(z_t)`` and a token sequence
``tau(y)`` of shape ``(N, L, D)``,

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V,
    Q = W_Q phi(z_t),   K = W_K tau(y),   V = W_V tau(y).

``tau`` is a text encoder for captions and a learned embedding for class labels (the paper's
class-conditional ImageNet models). Text encoders need weights that cannot be fetched offline,
so invdiff trains ``ClassTokens``: ``L`` learned tokens of width ``D`` per class, plus one
sequence for the "null" class that label dropout trains (classifier-free guidance, Ho &
Salimans 2022). The prior itself takes any ``(N, L', D)`` sequence
(``PixelPrior.conditioned(tokens=...)``), so a user with a text encoder of width ``D`` can pass
its output instead.

The tokens are stored beside the UNet as ``class_tokens.safetensors`` (tensors only: loading
runs no code), their shape in ``prior.json``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

TOKENS_FILE = "class_tokens.safetensors"


class ClassTokens(nn.Module):
    """``L`` learned tokens of width ``D`` per label; the last label is the null class."""

    def __init__(self, num_labels: int, tokens: int, dim: int) -> None:
        super().__init__()
        if num_labels < 2 or tokens < 1 or dim < 1:
            raise ValueError(
                f"ClassTokens needs >= 2 labels (the classes and the null class), >= 1 token "
                f"and width >= 1, got {num_labels}, {tokens}, {dim}"
            )
        self.num_labels, self.tokens, self.dim = int(num_labels), int(tokens), int(dim)
        self.table = nn.Embedding(self.num_labels, self.tokens * self.dim)
        # small tokens at the start, as text-encoder outputs are after their final layer norm
        nn.init.normal_(self.table.weight, std=0.02)

    @property
    def null_label(self) -> int:
        return self.num_labels - 1

    def forward(self, labels: Tensor) -> Tensor:
        """The ``(N, L, D)`` token sequences of ``N`` labels."""
        return self.table(labels.long()).view(labels.shape[0], self.tokens, self.dim)

    def metadata(self) -> dict[str, int]:
        return {"num_labels": self.num_labels, "tokens": self.tokens, "dim": self.dim}

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save

        from invdiff.io import write_bytes

        path = Path(folder) / TOKENS_FILE
        write_bytes(path, save({"table": self.table.weight.detach().float().cpu().contiguous()}))
        return path

    @classmethod
    def load(
        cls, folder: str | Path, meta: dict, device: str | torch.device = "cpu"
    ) -> ClassTokens:
        """The tokens saved in ``folder`` with the shape ``meta`` (``prior.json``) declares."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(folder) / TOKENS_FILE
        try:
            shape = (int(meta["num_labels"]), int(meta["tokens"]), int(meta["dim"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{Path(folder) / 'prior.json'}: 'class_tokens' must give num_labels, tokens "
                f"and dim as integers, got {meta!r}"
            ) from err
        if path.is_symlink() or not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing (or a link): a cross-attention prior needs its class tokens "
                "beside the UNet; export the run again with `invdiff train`"
            )
        try:
            table = load_file(str(path))["table"]
        except (SafetensorError, KeyError, OSError) as err:
            raise ValueError(f"{path}: not a class-token file ({err})") from err
        if tuple(table.shape) != (shape[0], shape[1] * shape[2]):
            raise ValueError(
                f"{path}: table of shape {tuple(table.shape)}, prior.json declares "
                f"{shape[0]} labels x {shape[1]} tokens x {shape[2]}"
            )
        out = cls(*shape)
        with torch.no_grad():
            out.table.weight.copy_(table)
        return out.to(device).eval()


class CrossAttentionUNet(nn.Module):
    """What ``invdiff train pixel --cross-attention`` optimises: a ``UNet2DConditionModel`` and
    the ``ClassTokens`` that feed its cross-attention, called like a class-conditional UNet
    (``model(x_t, t, class_labels=labels)``)."""

    def __init__(self, unet: nn.Module, tokens: ClassTokens) -> None:
        super().__init__()
        self.unet, self.tokens = unet, tokens

    @property
    def config(self):  # noqa: ANN201 - the UNet's diffusers config
        return self.unet.config

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor,
        class_labels: Tensor | None = None,
        encoder_hidden_states: Tensor | None = None,
    ):  # noqa: ANN201 - a diffusers UNet2DConditionOutput
        if encoder_hidden_states is None:
            if class_labels is None:
                class_labels = torch.full(
                    (sample.shape[0],), self.tokens.null_label, device=sample.device
                )
            encoder_hidden_states = self.tokens(class_labels).to(sample.dtype)
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states)


def check_tokens(tokens: Tensor, dim: int, batch: int | None = None) -> Tensor:
    """``tokens`` as an ``(N or 1, L, D)`` float tensor, or a clear error."""
    if not isinstance(tokens, Tensor) or not tokens.is_floating_point():
        raise TypeError(f"tokens must be a float tensor (N, L, {dim}), got {tokens!r:.80}")
    if tokens.ndim == 2:
        tokens = tokens[None]
    if tokens.ndim != 3 or tokens.shape[-1] != dim or tokens.shape[1] < 1:
        raise ValueError(
            f"tokens must have shape (N, L, {dim}) (the UNet's cross_attention_dim is {dim}), "
            f"got {tuple(tokens.shape)}"
        )
    if batch is not None and tokens.shape[0] not in (1, batch):
        raise ValueError(f"tokens: {tokens.shape[0]} sequences for a batch of {batch}")
    if not torch.isfinite(tokens).all():
        raise ValueError("tokens contain NaN or infinite values")
    return tokens
