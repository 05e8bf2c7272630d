"""LRP rules in explicit matrix form, float64 NumPy: the slow, plain reference.

A layer is a matrix `M` (inputs x outputs) and a bias `b`; a convolution is
first unrolled into its Toeplitz matrix (`conv_matrix`). Each rule is then the
paper's formula over the contributions `z_ij` (Bach et al. 2015; Montavon et
al. 2017, 2019), for one example at a time, with no autodiff and nothing
shared with `sr_jax.lrp`. The generalised gamma rule follows Andeol et al.
2021 (zennit's `Gamma`), the z^B rule Montavon et al. 2017 (no bias term
unless `zero_bias=False`).
"""

from __future__ import annotations

import numpy as np


def conv_matrix(kernel: np.ndarray, in_hw: tuple[int, int],
                strides: tuple[int, int],
                padding: tuple[tuple[int, int], tuple[int, int]]
                ) -> tuple[np.ndarray, tuple[int, int]]:
  """The matrix of a 2-D convolution on one HWC image, flattened in C order.

  Args:
    kernel: (kh, kw, cin, cout), as in Flax.
    in_hw: input height and width.
    strides: (sh, sw).
    padding: ((top, bottom), (left, right)) zero padding.

  Returns:
    `(M, (oh, ow))` with `M` of shape (h*w*cin, oh*ow*cout), so that
    `x.reshape(-1) @ M` is the flattened (oh, ow, cout) output without bias.
  """
  kh, kw, cin, cout = kernel.shape
  h, w = in_hw
  (pt, pb), (pl, pr) = padding
  oh = (h + pt + pb - kh) // strides[0] + 1
  ow = (w + pl + pr - kw) // strides[1] + 1
  m = np.zeros((h, w, cin, oh, ow, cout))
  for i in range(oh):
    for j in range(ow):
      for di in range(kh):
        for dj in range(kw):
          y, x = i * strides[0] + di - pt, j * strides[1] + dj - pl
          if 0 <= y < h and 0 <= x < w:
            m[y, x, :, i, j, :] += kernel[di, dj]
  return m.reshape(h * w * cin, oh * ow * cout), (oh, ow)


def pool_matrix(size_in: int, size_out: int) -> np.ndarray:
  """torch's AdaptiveAvgPool1d as a (size_in, size_out) matrix."""
  m = np.zeros((size_in, size_out))
  for i in range(size_out):
    start = int(np.floor(i * size_in / size_out))
    end = int(np.ceil((i + 1) * size_in / size_out))
    m[start:end, i] = 1.0 / (end - start)
  return m


def _stab(z: np.ndarray, eps: float) -> np.ndarray:
  return z + eps * np.where(z >= 0, 1.0, -1.0)


def _share(contrib: np.ndarray, denom: np.ndarray, r: np.ndarray) -> np.ndarray:
  """sum_j contrib_ij / denom_j * r_j, with 0/0 = 0."""
  ratio = np.divide(r, denom, out=np.zeros_like(r), where=denom != 0)
  return contrib @ ratio


def lrp(rule: str, x: np.ndarray, m: np.ndarray, b: np.ndarray,
        r: np.ndarray, *, zero_bias: bool = False, eps: float = 0.0,
        gamma: float = 0.0, generalised: bool = True, alpha: float = 1.0,
        beta: float = 0.0, low=None, high=None,
        stabilizer: float = 1e-6) -> np.ndarray:
  """Input relevance of one example by the formula of `rule`.

  Args:
    rule: "epsilon", "gamma", "alpha_beta", "flat", "wsquare", "zbox", "pass".
    x: input, flat (I,).
    m: layer matrix (I, J).
    b: bias (J,).
    r: output relevance (J,).
    zero_bias: leave the bias out.
    eps: epsilon of the epsilon rule (its stabiliser).
    gamma: gamma of the gamma rule.
    generalised: the generalised gamma rule (Andeol et al. 2021): output j
      takes x+ (w + g w+) + x- (w + g w-) and b + g b+ where its ordinary
      output (bias kept) is >= 0, x+ (w + g w-) + x- (w + g w+) and b + g b-
      where it is < 0. False: w + g w+ and b + g b+ everywhere.
    alpha: alpha of alpha-beta.
    beta: beta of alpha-beta.
    low: per-input lower bound (I,) for z^B.
    high: per-input upper bound (I,) for z^B.
    stabilizer: epsilon of the other rules.

  Returns:
    The input relevance (I,).
  """
  x, m, b, r = (np.asarray(a, np.float64) for a in (x, m, b, r))
  z_out = x @ m + b  # the layer's ordinary output
  b = np.zeros_like(b) if zero_bias else b
  if rule == "pass":
    return r.copy()
  if rule == "epsilon":
    z = x[:, None] * m
    return _share(z, _stab(z.sum(0) + b, eps), r)
  if rule == "gamma" and generalised:
    xp, xn = np.maximum(x, 0)[:, None], np.minimum(x, 0)[:, None]
    m_up, m_down = m + gamma * np.maximum(m, 0), m + gamma * np.minimum(m, 0)
    up = xp * m_up + xn * m_down
    down = xp * m_down + xn * m_up
    d_up = up.sum(0) + b + gamma * np.maximum(b, 0)
    d_down = down.sum(0) + b + gamma * np.minimum(b, 0)
    positive = z_out >= 0
    return (_share(up, _stab(d_up, stabilizer), np.where(positive, r, 0.0))
            + _share(down, _stab(d_down, stabilizer),
                     np.where(positive, 0.0, r)))
  if rule == "gamma":
    mg, bg = m + gamma * np.maximum(m, 0), b + gamma * np.maximum(b, 0)
    z = x[:, None] * mg
    return _share(z, _stab(z.sum(0) + bg, stabilizer), r)
  if rule == "alpha_beta":
    z = x[:, None] * m
    zp, zn = np.maximum(z, 0), np.minimum(z, 0)
    pos = _share(zp, _stab(zp.sum(0) + np.maximum(b, 0), stabilizer), r)
    neg = _share(zn, _stab(zn.sum(0) + np.minimum(b, 0), stabilizer), r)
    return alpha * pos - beta * neg
  if rule == "flat":
    v = (m != 0).astype(np.float64)  # the connections (kernels drawn nonzero)
    return _share(v, _stab(v.sum(0), stabilizer), r)
  if rule == "wsquare":
    v = m ** 2
    return _share(v, _stab(v.sum(0) + b ** 2, stabilizer), r)
  if rule == "zbox":
    z = (x[:, None] * m - np.asarray(low)[:, None] * np.maximum(m, 0)
         - np.asarray(high)[:, None] * np.minimum(m, 0))
    return _share(z, _stab(z.sum(0) + b, stabilizer), r)
  raise ValueError(f"unknown rule {rule!r}")
