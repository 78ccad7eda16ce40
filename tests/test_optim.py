"""Optimizer recipes: RMSprop, TTUR, Optimistic Adam (formula, state, schedules, config)."""

from __future__ import annotations

import io

import pytest
import torch

from ganrun import build, optim
from ganrun.errors import ConfigError
from tests.conftest import compose_config

GRADS = [
    torch.tensor([0.5, -1.0, 2.0]),
    torch.tensor([-0.3, 0.2, 1.0]),
    torch.tensor([1.0, 1.0, -4.0]),
]


def _run(opt_cls, grads, start=None, **kwargs):
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, -3.0]) if start is None else start.clone())
    opt = opt_cls([p], **kwargs)
    path = []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        path.append(p.detach().clone())
    return path, opt, p


def test_optimistic_adam_first_step_is_adams():
    kwargs = {"lr": 1e-2, "betas": (0.5, 0.9), "eps": 1e-8}
    (oadam,), _, _ = _run(optim.OptimisticAdamOptimizer, GRADS[:1], **kwargs)
    (adam,), _, _ = _run(torch.optim.Adam, GRADS[:1], **kwargs)
    assert torch.allclose(oadam, adam, atol=1e-7)


def test_optimistic_adam_follows_the_formula():
    # Daskalakis et al. 2018, Alg. 1, computed by hand in float64:
    # theta_t = theta_{t-1} - 2 lr u_t + lr u_{t-1}, u_t = m_hat_t / (sqrt(v_hat_t) + eps)
    lr, b1, b2, eps = 1e-2, 0.5, 0.9, 1e-8
    path, _, _ = _run(optim.OptimisticAdamOptimizer, GRADS, lr=lr, betas=(b1, b2), eps=eps)
    theta = torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)
    m = v = torch.zeros(3, dtype=torch.float64)
    prev = None
    for t, g in enumerate(GRADS, start=1):
        g = g.double()
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        theta = theta - 2 * lr * u + lr * (u if prev is None else prev)
        prev = u
        assert torch.allclose(path[t - 1].double(), theta, atol=1e-6), t
    # the optimistic step differs from Adam's after the first one
    adam_path, _, _ = _run(torch.optim.Adam, GRADS, lr=lr, betas=(b1, b2), eps=eps)
    assert not torch.allclose(path[-1], adam_path[-1])


def test_optimistic_adam_state_dict_resumes_exactly():
    straight, _, _ = _run(optim.OptimisticAdamOptimizer, GRADS, lr=1e-2)
    _, opt, p = _run(optim.OptimisticAdamOptimizer, GRADS[:2], lr=1e-2)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # what a checkpoint holds
    buffer.seek(0)
    q = torch.nn.Parameter(p.detach().clone())
    resumed = optim.OptimisticAdamOptimizer([q], lr=1e-2)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    q.grad = GRADS[2].clone()
    resumed.step()
    assert torch.equal(q.detach(), straight[-1])
    assert resumed.state[q]["step"] == 3


def _recipe(option: str, *extra: str):
    cfg = compose_config([f"optimizer={option}", *extra])
    build.validate(cfg)  # list defaults (betas) must resolve in place, too
    return build.build_optimizer(cfg)


def _params():
    return [torch.nn.Parameter(torch.zeros(2))], [torch.nn.Parameter(torch.zeros(2))]


def test_rmsprop_recipe_is_wgans():
    recipe = _recipe("rmsprop")
    opt_g, opt_d = recipe.build(*_params())
    assert isinstance(opt_d, torch.optim.RMSprop)
    for opt in (opt_g, opt_d):
        group = opt.param_groups[0]
        assert group["lr"] == pytest.approx(5e-5) and group["alpha"] == pytest.approx(0.99)
        assert group["momentum"] == 0.0


def test_ttur_recipe_has_separate_rates():
    recipe = _recipe("ttur")
    opt_g, opt_d = recipe.build(*_params())
    assert isinstance(opt_g, torch.optim.Adam)
    assert opt_g.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(4e-4)
    assert opt_d.param_groups[0]["betas"] == (0.0, 0.9)


def test_recipe_values_come_from_the_model_recipe_and_the_command_line():
    recipe = _recipe("ttur", "+model.recipe.optimizer.ttur.lr_d=1e-3", "optimizer.lr_g=2e-5")
    assert recipe.lr_d == pytest.approx(1e-3) and recipe.lr_g == pytest.approx(2e-5)
    recipe = _recipe("optimistic_adam", "+model.recipe.optimizer.optimistic_adam.betas=[0.0,0.99]")
    assert recipe.betas == (0.0, 0.99)
    assert isinstance(recipe.build(*_params())[0], optim.OptimisticAdamOptimizer)


@pytest.mark.parametrize("option", ["rmsprop", "ttur", "optimistic_adam"])
def test_new_recipes_follow_the_schedules(option):
    recipe = _recipe(option, "optimizer.schedule=linear")
    opt_g, opt_d = recipe.build(*_params())
    recipe.apply_schedule(opt_g, opt_d, step=25, total_steps=100)
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.75 * recipe.lr_g)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.75 * recipe.lr_d)


def test_bad_values_are_refused():
    with pytest.raises(ConfigError, match="betas must be two numbers"):
        optim.OptimisticAdam(betas=[0.5, 1.0])
    with pytest.raises(ConfigError, match="alpha must be in"):
        optim.RMSprop(alpha=1.5)
    with pytest.raises(ConfigError, match="lr_d must be > 0"):
        optim.TTUR(lr_d=0.0)
