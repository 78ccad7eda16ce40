"""A search space from Hydra's override grammar, as Optuna distributions.

``hydra.sweeper.params`` (and sweeps on the command line) are written the way
hydra-optuna-sweeper reads them:

* ``choice(a, b, c)`` (or ``a,b,c``) -> a categorical parameter;
* ``range(start, stop[, step])`` -> an integer (or float) parameter on that grid. Like
  Python's ``range`` and Hydra's basic sweeper, ``stop`` is excluded: ``range(1,4)``
  is 1, 2 or 3 (hydra-optuna-sweeper includes ``stop``);
* ``interval(low, high)`` -> a uniform float parameter (integers at both ends: an
  integer one); ``tag(log, interval(low, high))`` -> log-uniform;
* anything else (``trainer.steps=2000``) -> a fixed override of every trial.

A trial's parameter value goes back into an override string that Hydra parses to
the same value: categorical values keep the exact text they were written with (so
``choice([0.0,0.9],[0.5,0.999])`` works for list-valued settings), numbers are
written with ``repr``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

_PLAIN = (bool, int, float, str, type(None))


@dataclass
class Param:
    key: str  # as written, with a leading + or ~ if any
    distribution: Any  # an optuna.distributions.BaseDistribution
    # categorical only: the override text of each choice, in the distribution's order
    texts: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.key.lstrip("+~")

    def override(self, value: Any) -> str:
        """``key=<text>`` for a value the distribution produced."""
        from optuna.distributions import CategoricalDistribution, IntDistribution

        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            for choice, text in zip(d.choices, self.texts):
                if type(choice) is type(value) and choice == value:
                    return f"{self.key}={text}"
            raise ValueError(f"{value!r} is not a choice of {self.name}")
        if isinstance(d, IntDistribution):
            return f"{self.key}={int(value)}"
        return f"{self.key}={float(value)!r}"

    def low_point(self) -> Any:
        """A value of the space, for checking that a trial's config composes."""
        from optuna.distributions import CategoricalDistribution

        d = self.distribution
        return d.choices[0] if isinstance(d, CategoricalDistribution) else d.low


def _categorical(ov: Override):
    from optuna.distributions import CategoricalDistribution

    values = list(ov.sweep_iterator())
    texts = list(ov.sweep_string_iterator())
    plain = all(isinstance(v, _PLAIN) for v in values) and len({repr(v) for v in values}) == len(
        values
    )
    # Optuna's choices must be plain values; lists and dicts stay as their text
    return CategoricalDistribution(values if plain else texts), texts


def distribution(ov: Override) -> tuple[Any, list[str]]:
    """(Optuna distribution, categorical texts) for one sweep override."""
    from optuna.distributions import FloatDistribution, IntDistribution

    value = ov.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        return _categorical(ov)
    if isinstance(value, RangeSweep):
        values = list(ov.sweep_iterator())
        if not values:
            raise ValueError(f"{ov.input_line}: an empty range")
        if value.step is not None and value.step < 0:
            values = values[::-1]
        step = abs(value.step if value.step is not None else 1)
        if all(isinstance(v, int) for v in values) and isinstance(step, int):
            return IntDistribution(values[0], values[-1], step=step), []
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(step)), []
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        log = "log" in value.tags
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log), []
        return FloatDistribution(float(low), float(high), log=log), []
    raise ValueError(f"{ov.input_line}: not a sweep Optuna can search")


def parse(texts: list[str]) -> tuple[list[str], OrderedDict[str, Param]]:
    """(fixed overrides, search parameters) of override strings, later ones winning
    for the same key (the command line after ``hydra.sweeper.params``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    fixed: OrderedDict[str, str] = OrderedDict()
    space: OrderedDict[str, Param] = OrderedDict()
    for ov in OverridesParser.create().parse_overrides(texts):
        key = ov.get_key_element()
        name = key.lstrip("+~")
        fixed.pop(name, None)
        space.pop(name, None)
        if ov.is_sweep_override():
            dist, choice_texts = distribution(ov)
            space[name] = Param(key, dist, choice_texts)
        else:
            fixed[name] = f"{key}={ov.get_value_element_as_str()}" if not ov.is_delete() else key
    return list(fixed.values()), space


def params_overrides(params: dict[str, Param], values: dict[str, Any]) -> list[str]:
    return [params[name].override(values[name]) for name in params if name in values]
