"""AC-GAN — Odena, Olah & Shlens 2017, "Conditional Image Synthesis with
Auxiliary Classifier GANs" (arXiv:1610.09585, ICML 2017).

G is class-conditional: G(z, c) with c ~ p_c; D is not given the class, it
predicts it: D gives a probability distribution over sources, P(S | X), and
over the class labels, P(C | X) (Sec. 3). With

    L_S = E[log P(S = real | X_real)] + E[log P(S = fake | X_fake)]     (Eq. 2)
    L_C = E[log P(C = c | X_real)] + E[log P(C = c | X_fake)]           (Eq. 3)

D is trained to maximize L_S + L_C and G to maximize L_C - L_S. In ganrun the
source term is the loss (``loss=nonsaturating``; see the recipe for why not
the literal -L_S) and the class term is the ``aux_classifier`` regularizer
(``AuxiliaryClassifier`` below): -L_C, i.e. the softmax cross-entropy of D's
class head on real (with their labels) and generated (with the labels G was
given) samples, added to D's loss, and the fake half added to G's loss.

Networks: the paper's CIFAR-10 model (App. B), at ``width`` w = 96 and D base
d = w / 6 = 16:

* G: [z, one-hot(c)] (100 + 10 = the table's 110 inputs) -> FC s x s x 4w,
  ReLU -> 5x5 transposed convs stride 2: 2w, BN, ReLU; w, BN, ReLU (32 px only);
  C, tanh. At 32 px s = 4 (4 -> 8 -> 16 -> 32, channels 384-192-96-3).
* D: 3x3 convs d, 2d, 4d, 8d, 16d, 32d (16 ... 512) with strides 2, 1, 2, 1, 2, 1,
  LeakyReLU(0.2) and dropout 0.5 after each, BN after all but the first ->
  flattened 4x4x32d features -> a source logit (FC 1) and class logits (FC K).

MNIST (28 px, the default data) is ganrun's small variant of it: G starts from
7x7 and drops the w (96-channel) stage (7 -> 14 -> 28, channels 384-192-1); D is
the same stack (28 -> 14 -> 14 -> 7 -> 7 -> 4 -> 4). The paper trains AC-GAN on
ImageNet and CIFAR-10 only.

Deviations: the table lists G's FC output as 384 units; reshaped to s x s x 384
here so that three stride-2 layers reach 32 px. z ~ N(0, I): the paper's
appendix (as remembered here, not re-read) does not fix the prior.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base
from ganrun.objective import Batch, Regularizer

_START = {28: 7, 32: 4}  # G's first feature map per image side
# D's (channel multiple of d, stride) per layer: App. B's CIFAR-10 discriminator
D_LAYERS = ((1, 2), (2, 1), (4, 2), (8, 1), (16, 2), (32, 1))


def _check(module, num_classes: int, width: int, dropout: float | None = None) -> None:
    if (why := module.check_data(module.data_shape, num_classes)) is not None:
        raise ConfigError(why)
    if width < 1:
        raise ConfigError(f"model.width must be >= 1, got {width}")
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.D.dropout must be in [0, 1), got {dropout}")


class Generator(base.Generator):
    RESOLUTIONS = tuple(_START)
    IMAGES_ONLY = True
    REQUIRES_LABELS = True

    def __init__(
        self,
        data_shape,
        num_classes: int = 0,
        z_dim: int = 100,
        width: int = 96,
        z_dist: str = "normal",
    ):
        super().__init__(z_dim, data_shape, z_dist)
        _check(self, num_classes, width)
        self.num_classes = int(num_classes)
        channels, res, _ = self.data_shape
        w, self.start = int(width), _START[res]
        self.fc = nn.Sequential(
            nn.Linear(self.z_dim + self.num_classes, 4 * w * self.start**2), nn.ReLU(True)
        )
        chans = [4 * w, 2 * w] + ([w] if res == 32 else [])
        layers: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:]):
            layers += [
                nn.ConvTranspose2d(cin, cout, 5, 2, 2, output_padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(chans[-1], channels, 5, 2, 2, output_padding=1), nn.Tanh()]
        self.conv = nn.Sequential(*layers)
        self.fc_channels = 4 * w
        base.dcgan_init(self)  # App. B: weights N(0, 0.02), biases 0

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is None:
            raise ValueError("the acgan generator is class-conditional: call G(z, c)")
        y = F.one_hot(c.long(), self.num_classes).to(z.dtype)
        h = self.fc(torch.cat([z, y], dim=1))
        return self.conv(h.view(z.shape[0], self.fc_channels, self.start, self.start))


class Discriminator(base.Discriminator):
    RESOLUTIONS = tuple(_START)
    IMAGES_ONLY = True
    REQUIRES_LABELS = True

    def __init__(
        self,
        data_shape,
        num_classes: int = 0,
        width: int = 16,
        leak: float = 0.2,
        dropout: float = 0.5,
    ):
        super().__init__(data_shape)
        _check(self, num_classes, width, dropout)
        self.num_classes = int(num_classes)
        channels = self.data_shape[0]
        layers: list[nn.Module] = []
        cin = channels
        for i, (mult, stride) in enumerate(D_LAYERS):
            cout = mult * int(width)
            layers.append(nn.Conv2d(cin, cout, 3, stride, 1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers += [nn.LeakyReLU(leak, True), nn.Dropout(dropout)]
            cin = cout
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        features = cin * 4 * 4
        self.source = nn.Linear(features, 1)  # P(S = real | X), as a logit
        self.classes = nn.Linear(features, self.num_classes)  # P(C | X), as logits
        base.dcgan_init(self)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        # c is not an input of AC-GAN's D: it predicts the class instead
        h = self.trunk(x)
        return self.source(h).view(x.shape[0]), h

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K) from ``forward_features``' features: P(C | X) before softmax."""
        return self.classes(features)


# --------------------------------------------------------------------------- the L_C term
def class_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-E[log P(C = c | X)]: the softmax cross-entropy, averaged over the batch."""
    return F.cross_entropy(logits, labels.long())


class AuxiliaryClassifier(Regularizer):
    """weight * (-L_C), Odena et al. 2017, Eq. 3. D phase: -L_C on real samples
    (their labels) and generated ones (the labels G was given), so D maximizes
    L_S + L_C; G phase: the generated half, so G maximizes L_C (its -L_S is the
    adversarial loss). The real half is constant for G and left out there."""

    name = "aux_classifier"
    needs_features = True
    first_order = True  # cross-entropies only: no gradient of a gradient

    def __init__(self, weight: float = 1.0):
        if not weight > 0:
            raise ConfigError(f"regularizer.aux_classifier.weight must be > 0, got {weight}")
        self.weight = float(weight)

    @staticmethod
    def check_models(G_cls, D_cls, num_classes: int) -> str | None:
        """Why this term cannot work with these network classes and data, or None."""
        if not hasattr(D_cls, "classify"):
            return (
                "regularizer=aux_classifier needs a discriminator with a class head (model=acgan)"
            )
        if num_classes < 1:
            return "regularizer=aux_classifier needs a labelled dataset (this one has no labels)"
        return None

    def _classify(self, batch: Batch, features: torch.Tensor, labels) -> torch.Tensor:
        if not hasattr(batch.D, "classify") or labels is None:
            raise ConfigError(
                "regularizer=aux_classifier needs a discriminator with a class head "
                "(model=acgan) and a labelled dataset"
            )
        return class_nll(batch.D.classify(features), labels)

    def d_term(self, batch: Batch) -> torch.Tensor:
        real = self._classify(batch, batch.f_real, batch.real_c)
        fake = self._classify(batch, batch.f_fake, batch.fake_c)
        return self.weight * (real + fake)

    def g_term(self, batch: Batch) -> torch.Tensor:
        return self.weight * self._classify(batch, batch.f_fake, batch.fake_c)
