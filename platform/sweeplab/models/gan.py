"""GAN: a dense generator and discriminator, trained with manual optimization.

Each batch: one discriminator step (real → 1, generated → 0), then one
generator step (generated → 1), each with its own Adam (``lr_g``/``lr_d``,
``beta1``/``beta2``). ``train_loss`` is the generator's loss, ``val_loss`` the
discriminator's on validation rows and as many generated ones.

Sample quality, each validation epoch, from a classifier trained on the real
training split (scikit-learn's logistic regression on the same standardized
rows): ``val_fid``, the Fréchet distance between the classifier's logits on
validation rows and on generated rows; ``val_is``, its inception score
(exp of the mean KL divergence between p(y|x) and p(y)); ``val_confidence``, its
mean top-class probability on generated rows. The test metrics add the same
scores of the real test rows (``test_is_real``, ``test_confidence_real``) for
scale. A grid of samples is logged as an image each epoch
(``samples/epoch_NNN.png``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from sweeplab.data.split import Split
from sweeplab.models.base import InferenceModel, TrainableModule
from sweeplab.models.blocks import dense
from sweeplab.spec import Experiment, GANConfig

GRID = 8  # samples per side of the logged image grid


class QualityClassifier:
    """Logistic regression on the real training rows; scores generated rows."""

    def __init__(self, split: Split) -> None:
        from sklearn.linear_model import LogisticRegression

        x_train, x_val = split.standardized(split.x_train), split.standardized(split.x_val)
        self.model = LogisticRegression(max_iter=2000, C=0.5).fit(x_train, split.y_train)
        self.real_logits = self.model.decision_function(x_val)

    def scores(self, rows: np.ndarray) -> dict[str, float]:
        from scipy import linalg
        from scipy.special import softmax

        logits = self.model.decision_function(rows)
        probs = softmax(logits, axis=1)
        marginal = probs.mean(axis=0, keepdims=True)
        kl = (probs * (np.log(probs + 1e-12) - np.log(marginal + 1e-12))).sum(axis=1)
        mu_r, mu_g = self.real_logits.mean(axis=0), logits.mean(axis=0)
        cov_r = np.cov(self.real_logits, rowvar=False)
        cov_g = np.cov(logits, rowvar=False)
        root = linalg.sqrtm(cov_r @ cov_g)
        fid = float(((mu_r - mu_g) ** 2).sum() + np.trace(cov_r + cov_g - 2 * np.real(root)))
        return {
            "fid": max(fid, 0.0),
            "is": float(np.exp(kl.mean())),
            "confidence": float(probs.max(axis=1).mean()),
        }


@lru_cache(maxsize=4)
def _classifier(split: Split) -> QualityClassifier:
    return QualityClassifier(split)


class GAN(TrainableModule):
    def __init__(self, exp: Experiment, split: Split) -> None:
        super().__init__(exp, split)
        self.automatic_optimization = False
        self.cfg = cfg = cast(GANConfig, exp.model)
        n = split.n_features
        self.generator = dense(cfg.latent_dim, cfg.generator, n, cfg.activation)
        self.discriminator = dense(n, cfg.discriminator, 1, cfg.activation, dropout=0.3)
        self.split = split
        self.image_shape = split.shape
        real = split.raw(split.x_train)
        self.pixel_range = (float(real.min()), float(real.max()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.generator(z)
        return out

    def configure_optimizers(self) -> Any:
        betas = (self.cfg.beta1, self.cfg.beta2)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=self.cfg.lr_g, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=self.cfg.lr_d, betas=betas),
        ]

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        d_real, d_fake = self.discriminator(real), self.discriminator(fake)
        return (
            F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        ) / 2

    def training_step(self, batch: Any, batch_idx: int) -> None:
        real, _ = batch
        opt_g, opt_d = cast(list[Any], self.optimizers())
        fake = self(torch.randn(len(real), self.cfg.latent_dim, device=real.device))
        d_loss = self._d_loss(real, fake.detach())
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        d_fake = self.discriminator(fake)
        g_loss = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.log_epoch_mean("train_loss", g_loss, len(real))
        self.log_epoch_mean("train_d_loss", d_loss, len(real))

    def _generate(self, count: int, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(count, self.cfg.latent_dim, generator=generator).to(self.device)
        with torch.no_grad():
            return self(z)

    def _log_d_loss(self, key: str, batch: Any, batch_idx: int) -> None:
        real, _ = batch
        fake = self._generate(len(real), seed=batch_idx)
        loss = self._d_loss(real, fake)
        self.log(key, loss, on_epoch=True, batch_size=len(real), sync_dist=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._log_d_loss("val_loss", batch, batch_idx)

    def _quality(self, stage: str) -> None:
        samples = self._generate(self.cfg.samples, seed=0).float().cpu().numpy()
        classifier = _classifier(self.split)
        for key, value in classifier.scores(samples).items():
            self.log(f"{stage}_{key}", value, on_epoch=True)
        if stage == "test":  # the same scores of real digits, for scale
            real = classifier.scores(self.split.standardized(self.split.x_test))
            self.log("test_is_real", real["is"])
            self.log("test_confidence_real", real["confidence"])

    def on_validation_epoch_end(self) -> None:
        self._quality("val")
        log_figure = getattr(self.logger, "log_figure", None)
        if log_figure is not None and not self.trainer.sanity_checking:
            log_figure(self.sample_grid(), f"samples/epoch_{self.current_epoch:03d}.png")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._log_d_loss("test_loss", batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self._quality("test")

    def sample_grid(self) -> Any:
        """A GRID × GRID mosaic of generated samples in the data's own units (one image)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.split.raw(self._generate(GRID * GRID, seed=1).float().cpu().numpy())
        fig, ax = plt.subplots(figsize=(5, 5))
        if len(self.image_shape) == 3:
            c, h, w = self.image_shape
            low, high = self.pixel_range
            tiles = (rows.clip(low, high) - low) / (high - low or 1.0)  # the real data's range
            # one pixel of gutter around each tile, then (row, y, column, x, channel)
            padded = np.ones((GRID, GRID, c, h + 1, w + 1), dtype=np.float32)
            padded[..., :h, :w] = 1.0 - tiles.reshape(GRID, GRID, c, h, w)  # ink dark
            mosaic = padded.transpose(0, 3, 1, 4, 2).reshape(GRID * (h + 1), GRID * (w + 1), c)
            ax.imshow(
                mosaic if c == 3 else mosaic[..., 0],
                cmap="gray",
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
        else:
            ax.plot(rows.T, linewidth=0.5)
        ax.set_axis_off()
        ax.set_title(f"epoch {self.current_epoch}")
        fig.tight_layout()
        return fig

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, self.cfg.latent_dim)

    def inference_model(self, split: Split) -> InferenceModel:
        return InferenceModel(self.generator, split, "samples")
