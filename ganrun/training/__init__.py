"""The training loop (one for every model) and its helpers."""
