"""Surrogate spike functions: exact Heaviside forward, analytic derivative backward."""

import pytest
import torch

from convexsnn.surrogate import SURROGATES, get_surrogate, heaviside

NAMES = sorted(SURROGATES)


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_exact_heaviside(name):
    x = torch.tensor([-2.0, -1e-7, 0.0, 1e-7, 3.0], dtype=torch.float64, requires_grad=True)
    out = get_surrogate(name)(x)
    assert out.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("name", NAMES)
def test_backward_equals_surrogate_derivative(name):
    sg = get_surrogate(name)
    x = torch.linspace(-1.5, 1.5, 41, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(sg(x).sum(), x)
    assert torch.allclose(g, sg.derivative(x.detach()), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_primitive_gradcheck(name):
    """The hand-written derivative is the derivative of the documented smooth primitive."""
    sg = get_surrogate(name)
    # stay off the kinks of the triangular surrogate (|x| = 0, width) where it is not differentiable
    x = torch.tensor(
        [-0.83, -0.41, -0.17, 0.09, 0.33, 0.71], dtype=torch.float64, requires_grad=True
    )
    assert torch.autograd.gradcheck(sg.smooth_proxy, (x,), eps=1e-6, atol=1e-7)
    (auto,) = torch.autograd.grad(sg.primitive(x).sum(), x)
    assert torch.allclose(auto, sg.derivative(x.detach()), rtol=1e-10, atol=1e-12)


def test_atan_known_values():
    sg = get_surrogate("atan", alpha=2.0)
    assert sg.derivative(torch.tensor(0.0)).item() == pytest.approx(1.0)
    assert sg.derivative(torch.tensor(1.0)).item() == pytest.approx(1 / (1 + torch.pi**2))


def test_fast_sigmoid_default_slope():
    assert get_surrogate("fast_sigmoid").slope == 25.0


def test_heaviside_dtype():
    assert heaviside(torch.tensor([0.0], dtype=torch.float64)).dtype == torch.float64


def test_unknown_surrogate_name():
    with pytest.raises(ValueError, match="surrogate"):
        get_surrogate("tanh")


def test_bad_surrogate_param():
    with pytest.raises(ValueError, match="alpha"):
        get_surrogate("atan", alpha=-1.0)
    with pytest.raises(TypeError):
        get_surrogate("atan", slope=3.0)
