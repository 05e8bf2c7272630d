"""Mean distance to the K most similar candidate patches, in bounded memory.

For every query patch q and candidate patch c the dissimilarity is

    d(q, c) = ||q - c|| / (1 + c_pos * ||p_q - p_c||)

(colour distance damped by position distance; Goferman et al., TPAMI 2012),
and the kernel returns, per query, the mean of the K smallest d.

How it is computed:

* Queries are processed in blocks of `block_size` with `lax.map`, so at most
  `block_size x n_candidates` values exist at once, never
  `n_queries x n_candidates`.
* For a block, `||q - c||^2 = ||q||^2 + ||c||^2 - 2 q.c` is one matrix
  product, clamped at 0. Candidates are ranked by `d^2` (same order as `d`,
  no square root per pair); square roots are taken of the K kept values.
* The K smallest, exactly, in two stages. XLA's CPU `TopK` costs 15-20 ns
  per element and row at K = 64 (2-core VM), so one `lax.top_k` over all
  candidates cost more than the matrix product. Instead:
  1. the candidates are split into G groups of m consecutive candidates
     (`group_size`) and each group's minimum d^2 is taken;
  2. `lax.top_k` over the G group minima picks the K groups with the
     smallest minima (minima above a cheap upper bound of the K-th are set
     to +inf first: the CPU `TopK` is a partial sort that then rejects them
     at once instead of inserting them into its heap, 20-35% cheaper).
     Every one of the K smallest values lies in one of these groups
     (otherwise K other groups would each hold a value at least as small:
     K + 1 values no larger), ties at the K-th value aside, which do not
     change the sum;
  3. the d^2 of the K·m members of those groups are gathered, one contiguous
     slice of m per group, and the sum of their K smallest is found by
     `sum_smallest`: an exact bisection on the float32 bit patterns (31
     vectorised counting passes), which on CPU is several times cheaper than
     a second `lax.top_k`.
  With fewer than 4·K candidates (small images), a single `lax.top_k` over
  all of them is used instead.

Everything is computed in float32, or in float64 when the patches are
float64 (under `jax_enable_x64`): then the bisection runs on the int64 bit
patterns, in 63 passes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_HIGHEST = lax.Precision.HIGHEST
_ROWS_PER_CHUNK = 64  # rows bisected together: keeps the counts in L2 cache


def default_group_size(n_candidates: int, k: int) -> int:
  """Group size m of stage 1: 8, or 16 from 32,768 candidates on.

  Measured on a 2-core AMD EPYC VM (µs per query, K = 64, 224- and 250-px
  images): m = 8 was the fastest or within 2% of it at every scale with
  3,500-15,000 candidates (6, 10, 12 and 24 were 5-25% slower: XLA
  vectorises the group minima best over a power-of-two minor axis); at
  23,000-51,000 candidates (500 px) 8 and 16 were within 5% of each other.
  With fewer than 4·k candidates the two stages are skipped (m = 1, one
  `lax.top_k`).
  """
  if n_candidates < 4 * k:
    return 1
  return 8 if n_candidates < 32768 else 16


# The integer type with a float's bit pattern, and the bisection passes that
# find any value among the non-negative ones (bit patterns 0 .. that of +inf,
# below 2^31 or 2^63: each pass halves the bracket).
_BITS = {np.dtype(np.float32): (jnp.int32, 31),
         np.dtype(np.float64): (jnp.int64, 63)}


def compute_dtype(*arrays: jax.Array) -> np.dtype:
  """float64 if any of `arrays` is float64 (only under jax_enable_x64, where
  such arrays exist), otherwise float32: the dtype the kernel computes in."""
  if any(a.dtype == np.float64 for a in arrays):
    return np.dtype(np.float64)
  return np.dtype(np.float32)


def _kth_smallest_rows(x: jax.Array, k: int) -> jax.Array:
  """`kth_smallest` of one (rows, n) chunk, bisected in (n, rows) layout."""
  int_type, passes = _BITS[np.dtype(x.dtype)]
  bits = lax.bitcast_convert_type(jnp.abs(x), int_type).T  # abs: -0.0 → 0
  lo = jnp.min(bits, axis=0) - 1                 # count(<= lo) < k
  hi = jnp.max(bits, axis=0)                     # count(<= hi) = n >= k

  def body(_, state):
    lo, hi = state
    mid = lo + (hi - lo) // 2
    enough = jnp.sum(bits <= mid, axis=0, dtype=jnp.int32) >= k
    return jnp.where(enough, lo, mid), jnp.where(enough, mid, hi)

  _, hi = lax.fori_loop(0, passes, body, (lo, hi))  # hi - lo < 2^passes
  return lax.bitcast_convert_type(hi, x.dtype)       # exactly the k-th value


def _sum_smallest_rows(x: jax.Array, k: int, fn) -> jax.Array:
  """`sum_smallest` for one (rows, n) chunk."""
  kth = _kth_smallest_rows(x, k)
  below = x < kth[:, None]
  n_below = jnp.sum(below, axis=1, dtype=jnp.int32)
  total = jnp.sum(jnp.where(below, fn(x), 0.0), axis=1)
  return total + (k - n_below).astype(x.dtype) * fn(kth)


def _by_row_chunks(row_fn, x: jax.typing.ArrayLike, k: int) -> jax.Array:
  """`row_fn(chunk)` over chunks of `_ROWS_PER_CHUNK` rows of float32 or
  float64 `x`, after validating `x` and `k`."""
  x = jnp.asarray(x)
  x = x.astype(compute_dtype(x))
  if x.ndim != 2:
    raise ValueError(f"`x` (shape={x.shape}) must be 2-D (rows, n).")
  rows, n = x.shape
  if not 1 <= k <= n:
    raise ValueError(f"`k` (={k}) must be between 1 and the row length (={n}).")
  chunk = math.gcd(rows, _ROWS_PER_CHUNK)
  if chunk == rows:
    return row_fn(x)
  chunks = x.reshape(rows // chunk, chunk, n)
  return lax.map(row_fn, chunks).reshape(rows)


def kth_smallest(x: jax.typing.ArrayLike, k: int) -> jax.Array:
  """The `k`-th smallest entry of each row of non-negative `x`, exactly.

  Bisection on the bit patterns of the absolute values, which are ordered
  as the values for non-negative floats (-0.0 counts as 0.0): int32 for
  float32, 31 passes; int64 for float64, 63 passes. Each pass counts the
  entries <= a per-row threshold.

  Args:
    x: float32 or float64 `(rows, n)` with non-negative entries (+inf
      allowed); other dtypes are converted to float32.
    k: the rank, `1 <= k <= n`.

  Returns:
    `(rows,)` of `x`'s dtype: `np.partition(x, k - 1, axis=1)[:, k - 1]`.

  Raises:
    ValueError: if `x` is not 2-D or `k` is not in [1, n].

  Examples:
    >>> kth_smallest(jnp.array([[3.0, 1.0, 2.0, 1.0]]), 3)
    Array([2.], dtype=float32)
  """
  return _by_row_chunks(lambda c: _kth_smallest_rows(c, k), x, k)


def sum_smallest(x: jax.typing.ArrayLike, k: int, fn=lambda v: v) -> jax.Array:
  """Sum of `fn` over the `k` smallest entries of each row, exactly.

  The k-th smallest value t is found by `kth_smallest`'s bisection. Then the
  sum is `sum(fn(x) for x < t)` plus `fn(t)` once for each of the k places
  not yet filled, so ties at t are handled exactly.

  Args:
    x: float32 or float64 `(rows, n)` with non-negative entries (+inf
      allowed), n >= k; other dtypes are converted to float32.
    k: how many of the smallest entries to sum, `1 <= k <= n`.
    fn: monotone elementwise function applied before summing (e.g. sqrt).

  Returns:
    `(rows,)` of `x`'s dtype.

  Raises:
    ValueError: as `kth_smallest`.
  """
  return _by_row_chunks(lambda c: _sum_smallest_rows(c, k, fn), x, k)


def _damped_squared(dot, q_norm, c_norm, q_pos, c_pos_y, c_pos_x, c):
  """d^2 = max(|q|^2 + |c|^2 + dot, 0) / (1 + c |p_q - p_c|)^2.

  `dot` holds -2 q.c; shapes broadcast (queries first).
  """
  colour = jnp.maximum(q_norm + c_norm + dot, 0.0)
  dy = q_pos[..., 0] - c_pos_y
  dx = q_pos[..., 1] - c_pos_x
  damping = 1.0 + c * jnp.sqrt(dy * dy + dx * dx)
  return colour / (damping * damping)


def mean_knn_distance(queries: jax.typing.ArrayLike,
                      query_pos: jax.typing.ArrayLike,
                      candidates: jax.typing.ArrayLike,
                      candidate_pos: jax.typing.ArrayLike, *, k: int,
                      c: float, block_size: int = 512,
                      group_size: int | None = None) -> jax.Array:
  """Mean of the `k` smallest position-damped patch distances per query.

  Args:
    queries: `(n_q, D)` query patch vectors.
    query_pos: `(n_q, 2)` query positions (y, x).
    candidates: `(n_c, D)` candidate patch vectors.
    candidate_pos: `(n_c, 2)` candidate positions, same units.
    k: number of nearest candidates averaged, `1 <= k <= n_c`.
    c: position damping constant (3 in the paper).
    block_size: queries per block; memory is about
      `block_size * n_c * 8` bytes.
    group_size: candidates per group in stage 1; None picks
      `default_group_size(n_c, k)`; 1 means a single `lax.top_k` over all
      candidates. Any value gives the same result.

  Everything is computed in float64 if `queries` or `candidates` is float64
  (under `jax_enable_x64`), otherwise in float32; positions are converted.

  Returns:
    `(n_q,)` of that dtype: mean over the `k` smallest `d` for each query.

  Raises:
    ValueError: if `k` is not in [1, n_c], or `block_size` or `group_size`
      is < 1.
  """
  queries, candidates = jnp.asarray(queries), jnp.asarray(candidates)
  dtype = compute_dtype(queries, candidates)
  queries, candidates = queries.astype(dtype), candidates.astype(dtype)
  query_pos = jnp.asarray(query_pos, dtype)
  candidate_pos = jnp.asarray(candidate_pos, dtype)
  n_q, n_c = queries.shape[0], candidates.shape[0]
  if not 1 <= k <= n_c:
    raise ValueError(
        f"`k` (={k}) must be between 1 and the number of candidates "
        f"(={n_c}).")
  if block_size < 1:
    raise ValueError(f"`block_size` (={block_size}) must be >= 1.")
  m = default_group_size(n_c, k) if group_size is None else int(group_size)
  if m < 1:
    raise ValueError(f"`group_size` (={m}) must be >= 1.")
  n_groups = max(-(-n_c // m), k)  # at least k groups (extra ones all +inf)
  pad_c = n_groups * m - n_c
  per_set = -(-n_groups // k)  # groups in each of the top_k filter's k sets

  # Candidate side, padded with +inf norms (never among the k smallest).
  # Column g * m + j of a block's products is member j of group g.
  c_norm = jnp.pad(jnp.sum(candidates * candidates, axis=1), (0, pad_c),
                   constant_values=np.inf)
  c_mat = jnp.pad(-2.0 * candidates, ((0, pad_c), (0, 0))).T       # (D, N)
  c_pos = jnp.pad(candidate_pos, ((0, pad_c), (0, 0)))

  block = int(min(block_size, max(n_q, 1)))
  n_blocks = -(-n_q // block)
  pad_q = n_blocks * block - n_q
  q_mat = jnp.pad(queries, ((0, pad_q), (0, 0))).reshape(n_blocks, block, -1)
  q_norm = jnp.pad(jnp.sum(queries * queries, axis=1), (0, pad_q))
  q_norm = q_norm.reshape(n_blocks, block, 1)
  q_pos = jnp.pad(query_pos, ((0, pad_q), (0, 0)))
  q_pos = q_pos.reshape(n_blocks, block, 1, 2)

  def one_block(args):
    q, qn, qp = args
    dot = jnp.matmul(q, c_mat, precision=_HIGHEST)            # (B, m·G)
    d2 = _damped_squared(dot, qn, c_norm, qp, c_pos[:, 0], c_pos[:, 1], c)
    if m == 1:  # few candidates: one top_k (compiles faster than stage 3)
      return jnp.mean(jnp.sqrt(-lax.top_k(-d2, k)[0]), axis=-1)
    d2 = d2.reshape(block, n_groups, m)
    group_min = jnp.min(d2, axis=2)                             # (B, G)
    # XLA's CPU TopK is a partial sort whose cost grows with the number of
    # heap insertions; values that cannot be among the k smallest group
    # minima are set to +inf first, so that they are rejected at once. The
    # bound: the largest of the minima of k disjoint sets of groups (k group
    # minima are <= it, so the k-th smallest is too).
    sets = jnp.pad(group_min, ((0, 0), (0, per_set * k - n_groups)),
                   constant_values=np.inf).reshape(block, per_set, k)
    bound = jnp.max(jnp.min(sets, axis=1), axis=1, keepdims=True)
    keys = jnp.where(group_min <= bound, group_min, np.inf)
    # Only the indices are used: using TopK's values as well (even only
    # multiplied by 0 into the result) made this whole kernel 3.5x slower
    # under XLA:CPU (JAX 0.10.2), though not a top_k alone.
    _, groups = lax.top_k(-keys, k)                             # (B, k)
    # One contiguous slice of m per chosen group (a gather of k slices per
    # row, several times cheaper on CPU than k·m single elements).
    members = jax.vmap(lambda row, chosen: row[chosen])(d2, groups)
    return sum_smallest(members.reshape(block, k * m), k, jnp.sqrt) / k

  means = lax.map(one_block, (q_mat, q_norm, q_pos))
  return means.reshape(-1)[:n_q]
