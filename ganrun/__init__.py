"""ganrun: a config-driven experiment CLI for the GAN family."""

__version__ = "0.1.0"
