import pytest
import torch

from gradversary.functional import grad_reverse, input_gradient
from gradversary.nn import GradientReversal


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("coeff", [0.0, 0.3, 1.0, 6.0])
def test_grl_gradient_is_minus_coeff_times_plain_gradient(dtype, coeff):
    torch.manual_seed(0)
    x = torch.randn(5, 7, dtype=dtype)
    w = torch.randn(7, 3, dtype=dtype)
    x1 = x.clone().requires_grad_()
    (x1 @ w).square().sum().backward()
    x2 = x.clone().requires_grad_()
    out = GradientReversal(coeff).to(dtype)(x2)
    assert torch.equal(out, x)  # identity forward
    (out @ w).square().sum().backward()
    assert x2.grad.dtype == dtype
    tol = {torch.float16: 1e-2, torch.bfloat16: 5e-2}.get(dtype, 1e-6)
    torch.testing.assert_close(x2.grad, -coeff * x1.grad, rtol=tol, atol=tol)


def test_functional_and_module_agree_and_coeff_gets_no_grad():
    x = torch.randn(4, requires_grad=True)
    c = torch.tensor(2.5, requires_grad=True)
    grad_reverse(x, c).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((4,), -2.5))
    assert c.grad is None


def test_coeff_is_a_buffer_that_survives_state_dict_and_to():
    grl = GradientReversal(0.25)
    assert "coeff" in dict(grl.named_buffers())
    grl.set_coeff(0.75)
    other = GradientReversal(0.0)
    other.load_state_dict(grl.state_dict())
    assert float(other.coeff) == 0.75
    assert other.to(torch.float64).coeff.dtype == torch.float64
    assert float(other.coeff) == 0.75
    # the forward pass never changes the coefficient
    other(torch.ones(3, dtype=torch.float64, requires_grad=True)).sum().backward()
    assert float(other.coeff) == 0.75


def test_gradcheck_double_backprop_path():
    torch.manual_seed(0)
    w = torch.randn(3, 2, dtype=torch.float64)

    def f(x):
        g = input_gradient(torch.tanh(x @ w).square().sum(), x)  # needs create_graph
        return g.square().sum()

    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_double_backprop_through_grl_matches_hand_written_gradient():
    # GRL's backward is not the derivative of its forward (that is the point), so gradcheck
    # cannot apply. Instead, write d/dx sum(R(tanh(x w))^2) by hand and compare both it and
    # its gradient with respect to w (the second-order path) with autograd's.
    torch.manual_seed(0)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    c = 0.7
    h = torch.tanh(x @ w)
    g = input_gradient(grad_reverse(h, c).square().sum(), x)
    # hand: dL/dR = 2 R(h); the GRL gives -c; tanh gives (1 - h^2); the matmul gives w^T.
    # R(h) stays in the expression, so the second-order path through it is reversed again.
    g_ref = ((-c * 2 * grad_reverse(h, c)) * (1 - h ** 2)) @ w.T
    torch.testing.assert_close(g, g_ref)
    plain = input_gradient(h.square().sum(), x)
    torch.testing.assert_close(g, -c * plain)
    (gw,) = torch.autograd.grad(g.square().sum(), w, retain_graph=True)
    (gw_ref,) = torch.autograd.grad(g_ref.square().sum(), w)
    torch.testing.assert_close(gw, gw_ref)
    assert gw.abs().sum() > 0


def test_input_gradient_rejects_bad_input():
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match="scalar"):
        input_gradient(x * 2, x)
    with pytest.raises(ValueError, match="require grad"):
        input_gradient(torch.randn(3).sum(), torch.randn(3))
