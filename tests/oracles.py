"""Independent references the tests compare against: NumPy only, float64, no code from the library."""
import numpy as np


def causal_conv_np(u: np.ndarray, k: np.ndarray) -> np.ndarray:
    """y[b,h,:] = first L samples of numpy.convolve(u[b,h], k[h]) (the full linear convolution)."""
    B, H, L = u.shape
    y = np.empty((B, H, L), dtype=np.float64)
    for b in range(B):
        for h in range(H):
            y[b, h] = np.convolve(u[b, h].astype(np.float64), k[h].astype(np.float64))[:L]
    return y


def bidirectional_conv_np(u: np.ndarray, k: np.ndarray) -> np.ndarray:
    """k (H, 2L): taps at lags 0..L-1, then at lags -1..-L; by an explicit sum over lags."""
    B, H, L = u.shape
    y = np.zeros((B, H, L), dtype=np.float64)
    u64 = u.astype(np.float64)
    for h in range(H):
        for s in range(L):                       # causal lag s: y[t] += k[s] u[t - s]
            y[:, h, s:] += k[h, s] * u64[:, h, :L - s]
        for j in range(L):                       # anti-causal lag -(j+1): y[t] += k[L+j] u[t+j+1]
            if j + 1 < L:
                y[:, h, :L - j - 1] += k[h, L + j] * u64[:, h, j + 1:]
    return y


def circular_conv_np(u: np.ndarray, k: np.ndarray) -> np.ndarray:
    """y[t] = sum_s k[s] u[(t - s) mod L], by an explicit loop over s."""
    B, H, L = u.shape
    y = np.zeros((B, H, L), dtype=np.float64)
    for h in range(H):
        for s in range(k.shape[1]):
            y[:, h] += k[h, s] * np.roll(u[:, h].astype(np.float64), s, axis=-1)
    return y


def rel_err(a, b) -> float:
    """max |a - b| / max |b|, with a floor so an all-zero reference does not divide by zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)) if b.size else 0.0


def dft_matrix_np(n: int) -> np.ndarray:
    """The n x n DFT matrix W[j, k] = exp(-2 pi i j k / n), straight from the definition."""
    j = np.arange(n)
    return np.exp(-2j * np.pi * np.outer(j, j) / n)


def monarch_matrix_np(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """The dense N x N matrix of a two-factor Monarch transform with blocks b1 (n1 x n1), b2 (n2 x n2).

    Written entry by entry from the Cooley-Tukey index map (input n = n2_size * a + c, output
    k = r + n1_size * s): M[r + n1*s, n2*a + c] = b2[s, c] * exp(-2 pi i r c / N) * b1[r, a].
    With b1, b2 the DFT matrices this is the N-point DFT matrix (checked in test_learned).
    """
    n1, n2 = b1.shape[0], b2.shape[0]
    N = n1 * n2
    M = np.zeros((N, N), dtype=np.complex128)
    for r in range(n1):
        for s in range(n2):
            for a in range(n1):
                for c in range(n2):
                    M[r + n1 * s, n2 * a + c] = b2[s, c] * np.exp(-2j * np.pi * r * c / N) * b1[r, a]
    return M

# ----------------------------------------------------------------------------- rung 6
def squash_np(k: np.ndarray, lam: float) -> np.ndarray:
    """Soft-thresholding written as three cases: k - lam above lam, k + lam below -lam, else 0."""
    k = np.asarray(k, dtype=np.float64)
    return np.where(k > lam, k - lam, np.where(k < -lam, k + lam, 0.0))


def smooth_np(k: np.ndarray, width: int) -> np.ndarray:
    """Moving average of odd width along the last axis, zeros beyond the ends: np.convolve 'same'."""
    k = np.asarray(k, dtype=np.float64)
    box = np.ones(width) / width
    rows = k.reshape(-1, k.shape[-1])
    return np.stack([np.convolve(r, box, mode="same") for r in rows]).reshape(k.shape)


def box_filter_hf_fraction(width: int, cutoff: float, n: int = 400001) -> float:
    """Share of |H(f)|^2 above ``cutoff`` for the length-``width`` moving average, where
    H(f) = sin(pi f w) / (w sin(pi f)), integrated numerically over 0 < f <= 0.5: the expected
    high-frequency fraction of smoothed white noise (whose input spectrum is flat)."""
    f = np.linspace(0.0, 0.5, n)[1:]
    H2 = (np.sin(np.pi * f * width) / (width * np.sin(np.pi * f))) ** 2
    return float(H2[f > cutoff].sum() / H2.sum())


def ssm_impulse_response_np(dt, A, C, L: int) -> np.ndarray:
    """Impulse response of diagonal SSMs by running the recurrence (no closed form):
    x_0 = Bbar, x_{l+1} = Abar x_l, y_l = 2 Re(C . x_l), with Abar = exp(dt A),
    Bbar = (Abar - 1) / A (zero-order hold, B = 1). dt (H,), A and C (H, N) complex."""
    dt = np.asarray(dt, dtype=np.float64)[:, None]
    A = np.asarray(A, dtype=np.complex128)
    C = np.asarray(C, dtype=np.complex128)
    Abar = np.exp(dt * A)
    x = (Abar - 1.0) / A
    y = np.empty((A.shape[0], L))
    for l in range(L):
        y[:, l] = 2.0 * np.real((C * x).sum(-1))
        x = Abar * x
    return y

def complex_rel_err(a, b) -> float:
    """rel_err for complex arrays: max |a - b| / max |b| over complex moduli (rel_err drops imag)."""
    a = np.asarray(a, dtype=np.complex128)
    b = np.asarray(b, dtype=np.complex128)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)) if b.size else 0.0


def causal_conv_grads_np(u: np.ndarray, k: np.ndarray, g: np.ndarray):
    """Gradients of sum(g * y) for y = causal conv(u, k), by the explicit sums over lags s:

    grad_u[b,h,m] = sum_s k[h,s] g[b,h,m+s]        grad_k[h,s] = sum_{b,m} g[b,h,m+s] u[b,h,m]
    """
    B, H, L = u.shape
    u64, k64, g64 = (a.astype(np.float64) for a in (u, k, g))
    grad_u = np.zeros((B, H, L))
    grad_k = np.zeros(k.shape)
    for s in range(k.shape[1]):
        grad_u[:, :, :L - s] += k64[None, :, s, None] * g64[:, :, s:]
        grad_k[:, s] = (g64[:, :, s:] * u64[:, :, :L - s]).sum(axis=(0, 2))
    return grad_u, grad_k
