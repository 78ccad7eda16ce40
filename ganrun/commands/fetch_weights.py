"""ganrun fetch-weights [out=<file>]

Downloads torch-fidelity's InceptionV3 weights (IS/FID/KID) ahead of time into
torch.hub's cache, where evaluation looks for them, and checks their SHA-256.
Offline it fails with one line naming the URL and where to put the file.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ganrun.commands import report_errors
from ganrun.config import register_configs
from ganrun.paths import conf_dir


def fetch(cfg: DictConfig) -> None:
    from ganrun.metrics import weights

    path = weights.fetch(cfg.out)
    print(f"{path}: SHA-256 {weights.INCEPTION_SHA256} (verified)")
    if cfg.out:
        print(f"use it with eval.inception_weights={path} or {weights.ENV_VAR}={path}")


@hydra.main(config_path=str(conf_dir()), config_name="fetch_weights", version_base="1.3")
def main(cfg: DictConfig):
    report_errors(lambda: fetch(cfg))


register_configs()
