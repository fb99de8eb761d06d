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
