"""Hooks: work the loop runs after generator steps without knowing what it is
(periodic evaluation, best-checkpoint tracking, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ganrun.training.loop import Trainer


class Hook:
    """Subclasses set ``name`` and override what they need.

    ``after_step`` runs after every generator step, after the progress picture
    and before the step's checkpoint (so what a hook records is saved with it);
    numbers it returns are logged to TensorBoard at that step and included in
    what ``Trainer.run`` returns. ``state_dict`` goes into every checkpoint.
    """

    name = "hook"

    def after_step(self, trainer: Trainer) -> dict[str, float] | None:
        return None

    def at_end(self, trainer: Trainer) -> dict[str, float] | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
