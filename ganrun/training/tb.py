"""TensorBoard event files, or nothing when the logger is off."""

from __future__ import annotations

from pathlib import Path

import torch


class NullWriter:
    def scalars(self, values: dict[str, float], step: int) -> None:
        pass

    def image(self, tag: str, img: torch.Tensor, step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardWriter(NullWriter):
    def __init__(self, folder: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: on resume, TensorBoard hides events at or after this step
        # that an interrupted earlier writer logged, so curves do not double back.
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step or None)

    def scalars(self, values, step):
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def image(self, tag, img, step):
        self.writer.add_image(tag, img.clamp(0, 1), step)

    def text(self, tag, text, step):
        self.writer.add_text(tag, text, step)

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()
