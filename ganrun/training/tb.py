"""The writer interface every logger implements, and TensorBoard's writer.

A writer gets ``scalars``, ``image`` and ``text`` calls at a generator step, ``rewind``
when the run goes back to an earlier step (a divergence rollback), ``close`` when the
loop ends, and ``finish`` once the run's status is known (the train command's end):
the place for end-of-run records such as TensorBoard's HParams row. Other loggers and
the factory that fans out to several live in ganrun/training/loggers.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# status.json's words -> the HParams plugin's Status enum (tensorboard api.proto)
_TB_STATUS = {
    "finished": "STATUS_SUCCESS",
    "diverged": "STATUS_FAILURE",
    "failed": "STATUS_FAILURE",
}
HPARAMS_SUFFIX = ".hparams"  # the event file holding a run's HParams row, replaced at each end


class NullWriter:
    """Logs nothing (``logger=none``); the interface of every writer."""

    def scalars(self, values: dict[str, float], step: int) -> None:
        pass

    def image(self, tag: str, img: torch.Tensor, step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass

    def rewind(self, step: int) -> None:
        """The run continues from ``step``: what was logged at ``step`` and later is void."""

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def finish(
        self, status: str, hparams: dict[str, Any], scalars: dict[str, float], step: int
    ) -> None:
        """The run ended with ``status`` (finished, stopped, diverged, failed) at ``step``:
        ``hparams`` describe it (its overrides, model, dataset), ``scalars`` are end-of-run
        values (sweep/value). Called once, after ``close``."""


class TensorBoardWriter(NullWriter):
    def __init__(self, folder: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self._open = SummaryWriter
        # purge_step: on resume, TensorBoard hides events at or after this step
        # that an interrupted earlier writer logged, so curves do not double back.
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge_step or None)

    def scalars(self, values, step):
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def image(self, tag, img, step):
        self.writer.add_image(tag, img.clamp(0, 1), step)

    def text(self, tag, text, step):
        self.writer.add_text(tag, text, step)

    def rewind(self, step):
        # a new event file whose first event purges the old files' events at >= step
        self.writer.close()
        self.writer = self._open(log_dir=str(self.folder), purge_step=step)

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()

    def finish(self, status, hparams, scalars, step):
        """The run's row in the HParams tab: a SessionStartInfo (``hparams`` and the
        status as one more string column) and a SessionEndInfo, in an event file of their
        own (``*.hparams``). TensorBoard keeps the *first* summary metadata of a tag in a
        run, so a resumed run's new end could not replace an earlier one in the same
        files: the older ``*.hparams`` files are deleted once the new one is written.
        No Experiment summary is written: TensorBoard then builds the table from every
        run's session info (columns of all runs, not the first run's), with each
        scalar tag of the run as a metric column (its last value: final eval scores,
        eval/best/*)."""
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
        from torch.utils.tensorboard.summary import scalar
        from torch.utils.tensorboard.writer import FileWriter

        self.writer.close()
        older = sorted(self.folder.glob(f"*{HPARAMS_SUFFIX}"))
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for k, v in {**hparams, "status": status}.items():
            if isinstance(v, bool):
                start.hparams[k].bool_value = v
            elif isinstance(v, (int, float)):
                start.hparams[k].number_value = float(v)
            else:
                start.hparams[k].string_value = str(v)
        end = plugin_data_pb2.SessionEndInfo(
            status=api_pb2.Status.Value(_TB_STATUS.get(status, "STATUS_UNKNOWN")),
            end_time_secs=time.time(),
        )
        writer = FileWriter(str(self.folder), filename_suffix=HPARAMS_SUFFIX)
        for tag, data in (
            (metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
            (metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)),
        ):  # fmt: skip
            data.version = metadata.PLUGIN_DATA_VERSION
            value = Summary.Value(
                tag=tag,
                metadata=metadata.create_summary_metadata(data),
                tensor=metadata.NULL_TENSOR,
            )
            writer.add_summary(Summary(value=[value]), step)
        for k, v in scalars.items():
            writer.add_summary(scalar(k, float(v)), step)
        writer.close()
        for path in older:
            path.unlink(missing_ok=True)
