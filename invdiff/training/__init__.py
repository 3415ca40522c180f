"""Training loops for the package's own priors: ``invdiff train pixel|sr3|autoencoder|latent``.

    from invdiff.training import TrainConfig, train
    cfg = TrainConfig.preset("pixel", "small", steps=2000, out="runs/pixel")
    train(cfg)

One loop (``loop.train``) serves every kind: AdamW, an EMA of the weights (used for sampling and
for the exported prior), gradient clipping, optional bf16 autocast, a CSV loss log, sample grids
and atomic checkpoints that ``--resume`` continues bit for bit. What differs between kinds (the
network, the loss, the grid, the exported folder) lives in ``tasks.py``.
"""

from invdiff.training.config import TrainConfig
from invdiff.training.ema import EMA
from invdiff.training.loop import train

__all__ = ["EMA", "TrainConfig", "train"]
