"""CBPDN (transforms/_csc.py) beyond the lasso comparison of test_signal_processing.py, from the survivors of
the ``csc`` mutation sample (docs/testing.md): reconstruction and objective against a circular convolution
written out as loops, the documented defaults (rho = 50 lambda + 1, device 'auto'), the warm start, the
progress reports every 10 iterations, the dictionary size checks and the result's dtypes."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="CBPDN runs in torch")

from MedFusionLib.transforms._csc import cbpdn, objective, reconstruct, resolve_device  # noqa: E402


def _circular_synthesis(filters, coefficients):
    """sum_m d_m * x_m, circular convolution on the image grid, the filters' first sample at the origin,
    one output sample at a time (float64)."""
    b, m, h, w = coefficients.shape
    out = np.zeros((b, h, w))
    for k in range(b):
        for f in range(m):
            fh, fw = filters[f].shape
            for i in range(h):
                for j in range(w):
                    out[k, i, j] += sum(filters[f, p, q] * coefficients[k, f, (i - p) % h, (j - q) % w]
                                        for p in range(fh) for q in range(fw))
    return out


@pytest.fixture
def problem():
    rng = np.random.default_rng(21)
    filters = rng.standard_normal((2, 3, 2))
    filters /= np.linalg.norm(filters.reshape(2, -1), axis=1)[:, None, None]
    s = rng.standard_normal((2, 6, 7))
    return filters, s


def test_reconstruct_and_objective_equal_the_written_out_circular_convolution(problem):
    filters, s = problem
    rng = np.random.default_rng(22)
    x = rng.standard_normal((2, 2, 6, 7)).astype(np.float32) * (rng.random((2, 2, 6, 7)) < 0.3)
    rec = _circular_synthesis(filters, x.astype(np.float64))
    np.testing.assert_allclose(reconstruct(filters, x, device="cpu"), rec, atol=1e-5)
    lmbda = 0.07
    expected = 0.5 * ((rec - s) ** 2).sum(axis=(1, 2)) + lmbda * np.abs(x.astype(np.float64)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(objective(filters, x, s, lmbda), expected, rtol=1e-12)   # float64 throughout


def test_defaults_are_rho_50_lambda_plus_1_and_device_auto(problem):
    filters, s = problem
    default = cbpdn(filters, s, 0.05)
    explicit = cbpdn(filters, s, 0.05, rho=50 * 0.05 + 1.0, device="cpu")
    assert default.iterations == explicit.iterations
    np.testing.assert_array_equal(default.coefficients, explicit.coefficients)
    np.testing.assert_array_equal(default.rho, explicit.rho)
    assert default.coefficients.dtype == np.float32 and default.coefficients.shape == (2, 2, 6, 7)
    assert default.rho.dtype == np.float64 and default.objective.dtype == np.float64


def test_resolve_device():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device().type == resolve_device("auto").type
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")


def test_warm_start_from_the_solution_needs_fewer_iterations_and_keeps_the_code(problem):
    # (the scaled dual restarts at 0, so even the solution as x0 takes iterations to meet the dual test)
    filters, s = problem
    cold = cbpdn(filters, s, 0.05, rho=0.5, auto_rho=False, max_iter=3000, rel_tol=1e-4, device="cpu")
    assert cold.converged and cold.iterations > 100
    warm = cbpdn(filters, s, 0.05, rho=0.5, auto_rho=False, max_iter=3000, rel_tol=1e-4, device="cpu",
                 x0=cold.coefficients.astype(np.float64))
    assert warm.iterations < 0.7 * cold.iterations
    assert warm.coefficients.dtype == np.float32
    np.testing.assert_allclose(warm.coefficients, cold.coefficients, atol=1e-3)
    assert warm.objective == pytest.approx(cold.objective, rel=1e-5)


def test_progress_every_10_iterations(problem):
    filters, s = problem
    seen = []
    result = cbpdn(filters, s, 0.05, rho=0.5, auto_rho=False, max_iter=35, rel_tol=0.0, device="cpu",
                   progress=lambda fraction, message: seen.append((fraction, message)))
    assert result.iterations == 35 and not result.converged
    assert seen == [(k / 35, f"CBPDN iteration {k}") for k in (10, 20, 30)]


def test_one_iteration_is_allowed_and_check_every_must_be_positive(problem):
    filters, s = problem
    one = cbpdn(filters, s, 0.05, max_iter=1, device="cpu")
    assert one.iterations == 1 and one.coefficients.shape == (2, 2, 6, 7)
    with pytest.raises(ValueError, match="check_every must be at least 1"):
        cbpdn(filters, s, 0.05, check_every=0, device="cpu")


def test_filters_may_fill_the_image_but_not_exceed_it_on_either_side():
    s = np.zeros((5, 6))
    assert cbpdn(np.ones((1, 5, 6)), s, 0.1, max_iter=2, device="cpu").coefficients.shape == (1, 5, 6)
    for shape in [(1, 6, 2), (1, 2, 7), (5, 6)]:
        with pytest.raises(ValueError, match=r"no larger than the images \(5, 6\)"):
            cbpdn(np.ones(shape), s, 0.1, device="cpu")


def _synthesis_matrix(filters, h, w):
    """The circular synthesis x -> sum_m d_m * x_m as an explicit (h w, M h w) matrix, column by column."""
    m = filters.shape[0]
    a = np.zeros((h * w, m * h * w))
    for col in range(m * h * w):
        x = np.zeros((1, m, h, w))
        x.flat[col] = 1.0
        a[:, col] = _circular_synthesis(filters, x)[0].ravel()
    return a


def _admm_written_out(a, s, lmbda, rho, max_iter, rel_tol, relax=1.8):
    """Wohlberg's ADMM for BPDN with over-relaxation and residual balancing, as SPORCO documents it
    (``admm.ADMM``: RelaxParam 1.8, AutoRho with RsdlRatio mu = 1.2, Scaling tau = 1000 bounded by
    the ratio's square root, RsdlTarget xi = 1 + 18.3^(log10(lambda) + 1), AbsStopTol 0), on the explicit
    matrix with dense solves, float64. Returns (y, iterations, final rho)."""
    n = a.shape[1]
    ata, ats = a.T @ a, a.T @ s
    y, u = np.zeros(n), np.zeros(n)
    xi, mu, tau = (1.0 + 18.3 ** (np.log10(lmbda) + 1.0)) if lmbda > 0 else 1.0, 1.2, 1000.0
    for k in range(1, max_iter + 1):
        x = np.linalg.solve(ata + rho * np.eye(n), ats + rho * (y - u))
        xr = relax * x + (1 - relax) * y
        y_prev = y
        y = np.sign(xr + u) * np.maximum(np.abs(xr + u) - lmbda / rho, 0.0)
        u = u + xr - y
        # a zero norm normalises by 1 (lambda = 0 leaves u = 0)
        r = np.linalg.norm(x - y) / (max(np.linalg.norm(x), np.linalg.norm(y)) or 1.0)
        sd = np.linalg.norm(y - y_prev) / (np.linalg.norm(u) or 1.0)   # rho ||y - y_prev|| / ||rho u||
        if (r < rel_tol and sd < rel_tol) or k == max_iter:
            return y, k, rho
        if k > 1:
            with np.errstate(divide="ignore"):   # a zero residual: the ratio is 0 or inf, the step tau
                ratio = np.float64(r) / (sd * xi)
                mult = min(np.sqrt(ratio if ratio > 1 else 1 / ratio), tau)
            if r > xi * mu * sd:
                rho, u = rho * mult, u / mult
            elif sd > (mu / xi) * r:
                rho, u = rho / mult, u * mult


@pytest.mark.parametrize("lmbda, rho0", [(0.5, 0.02), (0.3, 5.0), (1.0, 50.0), (0.0, 2.0)])
def test_cbpdn_is_the_written_out_admm_with_residual_balancing(problem, lmbda, rho0):
    """The same iterates as an independent ADMM on the explicit synthesis matrix: the same iteration
    count, the same final penalty (so every residual-balancing step was taken alike) and the same code.
    The three cases start rho far below, near and far above the balance, so rho moves both ways; at the
    tolerance 1e-2 they stop after 23-46 iterations, except one image that runs to the limit of 300.
    lambda = 0 (least squares; the residual target xi is then 1) is allowed."""
    filters, s = problem
    h, w = s.shape[-2:]
    a = _synthesis_matrix(filters, h, w)
    result = cbpdn(filters, s, lmbda, rho=rho0, max_iter=300, rel_tol=1e-2, device="cpu")
    for k in range(len(s)):
        y, iterations, rho = _admm_written_out(a, s[k].ravel(), lmbda, rho0, 300, 1e-2)
        assert result.image_iterations[k] == iterations
        assert result.rho[k] == pytest.approx(rho, rel=1e-4)
        np.testing.assert_allclose(result.coefficients[k].ravel(), y, atol=2e-4)
    assert result.iterations == result.image_iterations.max()
    assert result.converged == bool((result.image_iterations < 300).all())
    assert isinstance(result.primal_residual, float) and isinstance(result.dual_residual, float)
    if result.converged:
        assert 0 <= result.primal_residual < 1e-2 and 0 <= result.dual_residual < 1e-2
