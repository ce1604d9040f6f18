r"""Spike functions with surrogate gradients.

Every spike function here has the **exact** Heaviside forward pass of the one LIF definition,

.. math:: S(x) = \mathbb{1}[x \ge 0], \qquad x = u_t - \theta,

so a network trained with a surrogate spikes exactly like the convex side's simulator. Only the
backward pass differs: it uses the derivative :math:`g'(x)` of a smooth stand-in :math:`g` for the
step. Each surrogate exposes

* ``__call__(x)``: Heaviside forward, surrogate backward (use it in training);
* ``derivative(x)``: the analytic :math:`g'(x)`;
* ``primitive(x)``: the smooth :math:`g(x)` itself (used by the tests to check ``derivative`` with
  :func:`torch.autograd.gradcheck`).

Surrogates carry their hyper-parameters as plain attributes and hold no global state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._checks import check_choice, check_positive_float

__all__ = [
    "Surrogate",
    "ATan",
    "FastSigmoid",
    "Sigmoid",
    "Triangular",
    "StraightThrough",
    "SURROGATES",
    "get_surrogate",
    "heaviside",
]


def heaviside(x: torch.Tensor) -> torch.Tensor:
    r"""Exact step :math:`\mathbb{1}[x \ge 0]` in the dtype of ``x`` (no gradient)."""
    return (x >= 0).to(x.dtype)


class _SurrogateSpike(torch.autograd.Function):
    """Heaviside forward, ``surrogate.derivative`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(x), None


class _SmoothProxy(torch.autograd.Function):
    """Forward ``primitive``, backward ``derivative``: lets gradcheck test the derivative formula."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return surrogate.primitive(x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(x), None


class Surrogate:
    """Base class: Heaviside forward with the backward pass given by :meth:`derivative`."""

    name = "base"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            return heaviside(x)
        return _SurrogateSpike.apply(x, self)

    def smooth_proxy(self, x: torch.Tensor) -> torch.Tensor:
        """``primitive`` forward with the hand-written ``derivative`` backward (for testing)."""
        return _SmoothProxy.apply(x, self)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError("subclasses define the surrogate derivative")

    def primitive(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError("subclasses define the smooth primitive")

    def params(self) -> dict:
        """Hyper-parameters as a JSON-safe dict."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class ATan(Surrogate):
    r"""Arc-tangent surrogate (Fang et al., 2021, "Incorporating learnable membrane time constant").

    .. math:: g(x) = \tfrac{1}{\pi}\arctan\!\big(\tfrac{\pi}{2}\alpha x\big) + \tfrac12, \qquad
              g'(x) = \frac{\alpha / 2}{1 + (\tfrac{\pi}{2}\alpha x)^2}

    Default ``alpha = 2`` (the snnTorch and SpikingJelly default).
    """

    name = "atan"

    def __init__(self, alpha: float = 2.0):
        self.alpha = check_positive_float(alpha, "alpha")

    def derivative(self, x):
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)

    def primitive(self, x):
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5

    def params(self):
        return {"alpha": self.alpha}


class FastSigmoid(Surrogate):
    r"""Fast-sigmoid surrogate of SuperSpike (Zenke & Ganguli, 2018).

    .. math:: g(x) = \tfrac12\Big(\frac{k x}{1 + k|x|} + 1\Big), \qquad
              g'(x) = \frac{k / 2}{(1 + k|x|)^2}

    With slope ``k = 25`` (default). The factor 1/2 makes :math:`g` rise from 0 to 1; SuperSpike
    writes the derivative as :math:`1/(1+k|x|)^2`, which differs only by the constant ``k/2``.
    """

    name = "fast_sigmoid"

    def __init__(self, slope: float = 25.0):
        self.slope = check_positive_float(slope, "slope")

    def derivative(self, x):
        return (self.slope / 2) / (1 + self.slope * x.abs()) ** 2

    def primitive(self, x):
        return 0.5 * (self.slope * x / (1 + self.slope * x.abs()) + 1)

    def params(self):
        return {"slope": self.slope}


class Sigmoid(Surrogate):
    r"""Logistic surrogate (e.g. Neftci, Mostafa & Zenke, 2019).

    .. math:: g(x) = \sigma(k x), \qquad g'(x) = k\,\sigma(kx)\,(1 - \sigma(kx))

    Default slope ``k = 5``.
    """

    name = "sigmoid"

    def __init__(self, slope: float = 5.0):
        self.slope = check_positive_float(slope, "slope")

    def derivative(self, x):
        s = torch.sigmoid(self.slope * x)
        return self.slope * s * (1 - s)

    def primitive(self, x):
        return torch.sigmoid(self.slope * x)

    def params(self):
        return {"slope": self.slope}


class Triangular(Surrogate):
    r"""Triangular (piecewise-linear) surrogate (Esser et al., 2016; Bellec et al., 2018).

    .. math:: g'(x) = \frac{\gamma}{w}\max\!\Big(0, 1 - \frac{|x|}{w}\Big)

    with half-width ``w = 1`` and scale ``gamma = 1`` by default (Bellec et al. use
    ``gamma = 0.3`` as a dampening factor). :math:`g` is the matching piecewise quadratic.
    """

    name = "triangular"

    def __init__(self, width: float = 1.0, gamma: float = 1.0):
        self.width = check_positive_float(width, "width")
        self.gamma = check_positive_float(gamma, "gamma")

    def derivative(self, x):
        return (self.gamma / self.width) * torch.clamp(1 - x.abs() / self.width, min=0)

    def primitive(self, x):
        z = torch.clamp(x / self.width, -1.0, 1.0)
        # integral of max(0, 1 - |z|) from -1 to z, scaled by gamma
        return self.gamma * (0.5 + z - torch.sign(z) * z * z / 2)

    def params(self):
        return {"width": self.width, "gamma": self.gamma}


class StraightThrough(Surrogate):
    r"""Straight-through estimator (Bengio, Leonard & Courville, 2013).

    .. math:: g(x) = x, \qquad g'(x) = 1
    """

    name = "straight_through"

    def derivative(self, x):
        return torch.ones_like(x)

    def primitive(self, x):
        return x.clone()


SURROGATES: dict[str, Callable[..., Surrogate]] = {
    "atan": ATan,
    "fast_sigmoid": FastSigmoid,
    "sigmoid": Sigmoid,
    "triangular": Triangular,
    "straight_through": StraightThrough,
}


def get_surrogate(name: str | Surrogate = "atan", **params) -> Surrogate:
    """Build a surrogate by name (``atan``, ``fast_sigmoid``, ``sigmoid``, ``triangular``,
    ``straight_through``) with optional hyper-parameters, or return ``name`` if already one."""
    if isinstance(name, Surrogate):
        if params:
            raise ValueError("surrogate parameters given together with a Surrogate instance")
        return name
    check_choice(name, "surrogate", SURROGATES)
    try:
        return SURROGATES[name](**params)
    except TypeError as exc:
        raise TypeError(f"bad parameters {params} for surrogate {name!r}: {exc}") from None
