"""Evaluation of generators.

- ``evaluate``: one evaluation (samples, metric dispatch, protocol); ``Settings``.
- ``fidelity``: IS/FID/KID/precision-recall through torch-fidelity, with the
  real-statistics cache and protocol stamps.
- ``features``: feature extractors (InceptionV3, fitted classifiers) for torch-fidelity.
- ``weights``: the InceptionV3 weights file: where it is, and its SHA-256 check.
- ``classifier``: the offline evaluator (``train_classifier``, ``load_classifier``).
- ``modes``: mode coverage on ring/grid/stacked MNIST.

Modules import torch-fidelity only when they need it. Nothing here knows the
training loop: the periodic evaluation during training (the ``Evaluator`` hook,
metrics.jsonl, best.pt) is ``ganrun.training.evaluation``, which calls into this
package.
"""
