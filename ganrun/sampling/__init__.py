"""Pictures ``ganrun sample`` draws beyond plain grids (latent vector arithmetic,
numbered grids); model-specific figures live with their models (``G.figure``)."""
