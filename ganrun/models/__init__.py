"""Generators and discriminators.

Contract shared by every model (the training loop relies on nothing else):

* ``G(z, c=None) -> x`` with ``x`` in [-1, 1] of shape ``(B, *G.data_shape)``;
  ``G.sample_z(n, device=..., generator=None, truncation=None)`` draws z.
* ``D(x, c=None) -> logits`` of shape ``(B,)`` (no sigmoid: losses work on logits).
* ``c`` is a LongTensor of class indices for conditional models, else ``None``.
* Both are built by ``ganrun.build`` with ``data_shape`` and ``num_classes``
  injected from the dataset, so model YAML never repeats the data's shape.
"""
