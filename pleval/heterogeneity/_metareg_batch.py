"""Many meta-regression fits at once (permutation tests; the leave-one-out's global search).

Each row b of ``(Y, V)`` (n × k) is a data set of k estimates and sampling variances fitted on
the same design X (k × p), or each on its own (n × k × p: the deleted fits of a leave-one-out,
refined by :func:`highest`). Everything is p × p algebra per row (``einsum`` over the k
estimates): ``X'WX``, ``A = (X'WX)⁻¹``, β̂, residuals, and the τ² estimators of :mod:`._tau2` —
closed forms for DL, HE, HS, SJ and FE; vector Fisher scoring for REML and ML from the DL
value, each row stopping as :func:`._tau2._fisher_scoring` stops (a step below 10⁻¹⁰ of its
``var(y) + mean(v)``); for PM/EB vector Newton steps on ``Q(τ²) = k − p``
(``dQ/dτ² = −r'W²r``) from 0 inside the bracket Q's sign gives, each row stopping once its step
is that small and Q within 10⁻⁸ of k − p (:func:`q_root`, shared with the leave-one-out fits).
A row whose iteration has not settled is refitted alone by :mod:`._tau2`.

REML and ML then take the global maximizer on τ² ≥ 0, as :func:`._tau2._fisher_scoring` does
(:func:`global_max`): the (restricted) likelihood of every row on the same grid of τ² (one
matrix product per block: the rows share the weights, or — permutations of one set of v — share
them once each row is sorted by v), compared with ℓ(0); where the grid's best point beats the
scoring result by more than rounding, a vector golden-section search between its neighbours
and regula falsi on the score take it to the maximum (:func:`highest`, which the leave-one-out
fits share: :func:`.influence.loo_global_max`).
"""

from __future__ import annotations

import numpy as np

from . import _tau2


def _xs(X: np.ndarray, sub: str) -> str:
    """The einsum subscripts of the design: ``sub`` if the rows share it (k × p), else with the
    row's axis (n × k × p, one design a row: the deleted fits of a leave-one-out)."""
    return sub if X.ndim == 2 else "n" + sub


def _rows(X: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The design of rows j (the shared one, or theirs)."""
    return X if X.ndim == 2 else X[j]


def wls_batch(Y: np.ndarray, V: np.ndarray, X: np.ndarray, t: np.ndarray):
    """Per row at τ² = t: weights ``W``, ``A = (X'WX)⁻¹``, β̂ and residuals R (X shared, k × p,
    or one a row, n × k × p)."""
    W = 1.0 / (V + t[:, None])
    A = np.linalg.inv(np.einsum(f"nk,{_xs(X, 'kp')},{_xs(X, 'kq')}->npq", W, X, X, optimize=True))
    if X.ndim == 2:
        beta = np.einsum("npq,nq->np", A, (W * Y) @ X, optimize=True)
        return W, A, beta, Y - beta @ X.T
    beta = np.einsum("npq,nk,nkq->np", A, W * Y, X, optimize=True)
    return W, A, beta, Y - np.einsum("np,nkp->nk", beta, X)


def ax(A: np.ndarray, X: np.ndarray, D: np.ndarray) -> np.ndarray:
    """``A X' diag(D) X`` per row (n × p × p)."""
    return np.einsum(f"npq,nk,{_xs(X, 'kq')},{_xs(X, 'kr')}->npr", A, D, X, X, optimize=True)


def fisher_step(method: str, Y: np.ndarray, V: np.ndarray, X: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per row, the REML or ML Fisher-scoring step ``score / information`` at τ² = t (its sign is
    the score's; formulas in :mod:`._tau2`)."""
    W, A, _, R = wls_batch(Y, V, X, t)
    wr2 = (W * W * R * R).sum(axis=1)
    if method == "REML":
        B2 = ax(A, X, W * W)
        tr_p = W.sum(axis=1) - np.trace(B2, axis1=1, axis2=2)
        tr_pp = ((W * W).sum(axis=1) - 2 * np.trace(ax(A, X, W**3), axis1=1, axis2=2)
                 + np.einsum("npq,nqp->n", B2, B2))
        return (wr2 - tr_p) / tr_pp
    return (wr2 - W.sum(axis=1)) / (W * W).sum(axis=1)


def loglik_batch(Y: np.ndarray, V: np.ndarray, X: np.ndarray, t: np.ndarray, restricted: bool) -> np.ndarray:
    """Per row, ``ℓ_R`` (``restricted``) or ``ℓ`` at τ² = t, as :func:`._tau2.restricted_loglik` and
    :func:`._tau2.loglik`."""
    W, A, _, R = wls_batch(Y, V, X, t)
    ll = np.log(V + t[:, None]).sum(axis=1) + (W * R * R).sum(axis=1)
    if restricted:
        ll = ll - np.linalg.slogdet(A)[1]
    return -0.5 * ll


def _ll_from_sums(S: np.ndarray, logs: np.ndarray, p: int, restricted: bool) -> np.ndarray:
    """ℓ from the weighted sums on the last axis of S — ``Σw x_a x_b`` (a ≤ b, row by row of the
    upper triangle), ``Σw x r``, ``Σw r²`` — and ``logs = Σ log(v + τ²)``."""
    u, rr = S[..., -1 - p: -1], S[..., -1]
    if p == 1:
        det = S[..., 0]
        rwr = rr - u[..., 0] ** 2 / det
    elif p == 2:  # one moderator: the 2 × 2 inverse written out
        a, b, d = S[..., 0], S[..., 1], S[..., 2]
        det = a * d - b * b
        rwr = rr - (d * u[..., 0] ** 2 - 2.0 * b * u[..., 0] * u[..., 1] + a * u[..., 1] ** 2) / det
    else:
        M = np.empty(S.shape[:-1] + (p, p))
        for c, (i, j) in enumerate(zip(*np.triu_indices(p))):
            M[..., i, j] = M[..., j, i] = S[..., c]
        rwr = rr - np.einsum("...p,...p->...", np.linalg.solve(M, u[..., None])[..., 0], u)
        det = np.linalg.det(M)
    ll = logs + rwr
    return -0.5 * (ll + np.log(det) if restricted else ll)


def loglik_grid_batch(R: np.ndarray, V: np.ndarray, X: np.ndarray, grid: np.ndarray, restricted: bool) -> np.ndarray:
    """``ℓ_R`` or ``ℓ`` of every row (n) at every τ² of ``grid`` (G): n × G, as
    :func:`._tau2._loglik_grid` (``r'Wr = Σwr² − u'M⁻¹u``, R the residuals at τ² = 0). Rows that
    share v (sign flips) share the G × k weights; rows whose v are permutations of one set (the
    moderator test permutes (y, v) together) share them after sorting each row by v, its
    residuals and design rows carried along; so each block is one matrix product
    (G × k)(k × n·f), f = p(p+1)/2 + p + 1 sums a row. Other rows are weighted one by one."""
    n, k = R.shape
    p = X.shape[1]
    G = grid.size
    pairs = list(zip(*np.triu_indices(p)))
    f = len(pairs) + p + 1
    out = np.empty((n, G))
    shared = bool((V == V[:1]).all())
    v0 = V[0] if shared else np.sort(V[0])
    W0 = 1.0 / (v0[None, :] + grid[:, None])
    logs0 = np.log(v0[None, :] + grid[:, None]).sum(axis=1)
    rows = max(1, 2**20 // (f * (k + G)))
    for s in range(0, n, rows):
        Rb, Vb = R[s: s + rows], V[s: s + rows]
        m = Rb.shape[0]
        same = shared
        if not shared:
            order = np.argsort(Vb, axis=1)  # tied v carry equal weights: their order does not matter
            same = bool((np.take_along_axis(Vb, order, axis=1) == v0).all())
        if same:  # k × m × f, so that the sums are one matrix product
            Rt = (np.take_along_axis(Rb, order, axis=1) if not shared else Rb).T
            Xt = X[order.T] if not shared else X[:, None, :]
        else:
            Rt, Xt = Rb.T, X[:, None, :]
        F = np.empty((k, m, f))
        for c, (i, j) in enumerate(pairs):
            np.multiply(Xt[..., i], Xt[..., j], out=F[..., c])
        for j in range(p):
            np.multiply(Xt[..., j], Rt, out=F[..., len(pairs) + j])
        np.multiply(Rt, Rt, out=F[..., -1])
        if same:
            S = (W0 @ F.reshape(k, m * f)).reshape(G, m, f)
            out[s: s + m] = _ll_from_sums(S, logs0[:, None], p, restricted).T
            continue
        step = max(1, 2**21 // (G * k))
        for c in range(0, m, step):  # weights of their own: m × G × k
            T = Vb[c: c + step, None, :] + grid[None, :, None]
            S = np.matmul(1.0 / T, F[:, c: c + step].transpose(1, 0, 2))
            out[s + c: s + c + T.shape[0]] = _ll_from_sums(S, np.log(T).sum(axis=2), p, restricted)
    return out


def _golden(obj, a: np.ndarray, b: np.ndarray, iters: int):
    """Vector golden-section search for the maximum of ``obj`` on [a, b] per row: the narrowed
    bracket and its better interior point."""
    g = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = obj(c), obj(d)
    for _ in range(iters):
        left = fc >= fd  # the maximum lies in [a, d]
        a, b = np.where(left, a, c), np.where(left, d, b)
        x = np.where(left, b - g * (b - a), a + g * (b - a))
        fx = obj(x)
        c, d, fc, fd = (np.where(left, x, d), np.where(left, c, x), np.where(left, fx, fd), np.where(left, fc, fx))
    return a, b, np.where(fc >= fd, c, d)


def _refine(method: str, Y, V, X, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The maximizer of the (restricted) likelihood of each row between the grid points a and b
    (vector counterpart of :func:`._tau2._bounded_max`): golden-section search to narrow the
    bracket, then the root of the score in it — regula falsi with the Illinois halving on the
    Fisher step (the score over the information), to rounding — where the narrowed bracket holds
    the root (otherwise, e.g. at the grid's end, a longer golden-section search's point)."""
    restricted = method == "REML"
    a, b, x = _golden(lambda t: loglik_batch(Y, V, X, t, restricted), a, b, 8)
    fa, fb = fisher_step(method, Y, V, X, a), fisher_step(method, Y, V, X, b)
    ok = (fa > 0) & (fb < 0)
    if (~ok).any():
        j = np.flatnonzero(~ok)
        x[j] = _golden(lambda t: loglik_batch(Y[j], V[j], _rows(X, j), t, restricted), a[j], b[j], 60)[2]
    j = np.flatnonzero(ok)
    a, b, fa, fb = a[j], b[j], fa[j], fb[j]
    Xj = _rows(X, j)
    last = np.zeros(j.size)  # the side replaced last: +1 the lower end, −1 the upper
    xj = 0.5 * (a + b)
    for _ in range(100):
        new = (a * fb - b * fa) / (fb - fa)
        new = np.where((new > a) & (new < b), new, 0.5 * (a + b))
        fx = fisher_step(method, Y[j], V[j], Xj, new)
        up = fx > 0
        settled = (np.abs(new - xj) <= 4 * np.finfo(float).eps * new) | (fx == 0)
        xj = new
        if settled.all():
            break
        fb = np.where(up & (last > 0), 0.5 * fb, fb)  # Illinois: the end kept twice counts half
        fa = np.where(~up & (last < 0), 0.5 * fa, fa)
        a, fa = np.where(up, new, a), np.where(up, fx, fa)
        b, fb = np.where(up, b, new), np.where(up, fb, fx)
        last = np.where(up, 1.0, -1.0)
    x[j] = xj
    return x


def global_max(method: str, Y: np.ndarray, V: np.ndarray, X: np.ndarray, t: np.ndarray,
               R0: np.ndarray | None = None) -> np.ndarray:
    """The global maximizer on τ² ≥ 0 of each row's REML (``method="REML"``) or ML likelihood,
    given the Fisher-scoring results t: the vector form of the second half of
    :func:`._tau2._fisher_scoring` — ℓ on the grid (10 a decade from 10⁻⁴ min v to 100 times the
    largest ``var(y) + mean(v)`` of the rows; for one row exactly the grid of :mod:`._tau2`), the
    grid's best point refined where it beats ℓ(t) by more than rounding, and ℓ(0)
    (:func:`highest`). ``R0``: the residuals at τ² = 0 if already at hand; ℓ(0) is the grid's
    first point."""
    restricted = method == "REML"
    scale = np.var(Y, axis=1) + V.mean(axis=1)
    grid = _tau2.tau2_grid(float(V.min()), float(scale.max()))
    ll = loglik_grid_batch(wls_batch(Y, V, X, np.zeros(Y.shape[0]))[3] if R0 is None else R0, V, X, grid, restricted)
    return highest(method, grid, ll, t, loglik_batch(Y, V, X, t, restricted), lambda j: (Y[j], V[j], X))


def highest(method: str, grid: np.ndarray, ll: np.ndarray, t: np.ndarray, top: np.ndarray, rows) -> np.ndarray:
    """Per row, the highest of the scoring result t (``top = ℓ(t)``), 0 and the best point of the
    grid (``ll``: the rows' ℓ on ``grid``, whose first point is 0) refined between its neighbours
    (:func:`_refine`) where it beats ℓ(t) by more than rounding; the scoring result is kept unless
    another is higher by more than rounding. ``rows(j)``: the data ``(Y, V, X)`` of rows j, for
    the refinement (X shared or one a row)."""
    restricted = method == "REML"
    n = t.size
    margin = 1e-10 * (1.0 + np.abs(top))
    i = ll.argmax(axis=1)
    refine = np.flatnonzero((i > 0) & (ll[np.arange(n), i] > top + margin))
    f0 = ll[:, 0]
    at0 = f0 > top + margin
    best, top = np.where(at0, 0.0, t), np.where(at0, f0, top)
    if refine.size:
        j = refine
        Y, V, X = rows(j)
        x = _refine(method, Y, V, X, grid[i[j] - 1], grid[np.minimum(i[j] + 1, grid.size - 1)])
        fx = loglik_batch(Y, V, X, x, restricted)
        best[j] = np.where(fx > top[j] + margin[j], x, best[j])
    return best


def tau2_batch(method: str, Y: np.ndarray, V: np.ndarray, X: np.ndarray) -> np.ndarray:
    """τ̂² of the meta-regression of every row of (Y, V) on X (REML and ML: the global maximizer,
    :func:`global_max`)."""
    n, k = Y.shape
    p = X.shape[1]
    kb = np.full(n, float(k))
    ones = np.ones((n, k))
    zero = np.zeros(n)
    if method == "FE":
        return zero
    if method in ("HE", "SJ"):  # unweighted least squares of the estimates in each fit
        B = np.linalg.inv(np.einsum("nk,kp,kq->npq", ones, X, X, optimize=True))
        bo = np.einsum("npq,nq->np", B, (ones * Y) @ X, optimize=True)
        rss = (ones * (Y - bo @ X.T) ** 2).sum(axis=1)
        if method == "HE":
            tr = (ones * V).sum(axis=1) - np.trace(ax(B, X, ones * V), axis1=1, axis2=2)
            return np.maximum(0.0, (rss - tr) / (kb - p))
        t0 = rss / kb
        W, _, _, R = wls_batch(Y, V, X, t0)
        return np.where(t0 > 0, t0 * (W * R * R).sum(axis=1) / (kb - p), 0.0)
    W, A, _, R0 = wls_batch(Y, V, X, zero)
    q0 = (W * R0 * R0).sum(axis=1)
    if method == "HS":
        return np.maximum(0.0, (q0 - kb) / W.sum(axis=1))
    dl = np.maximum(0.0, (q0 - (kb - p)) / (W.sum(axis=1) - np.trace(ax(A, X, W * W), axis1=1, axis2=2)))
    if method == "DL":
        return dl
    tol = 1e-10 * (np.var(Y, axis=1) + V.mean(axis=1))  # each row's, as _tau2._fisher_scoring

    def fallback(i):
        return _tau2.estimate_tau2(method, Y[i], V[i], X)[0]

    if method in ("PM", "EB"):
        def q_slope(t):
            W, _, _, R = wls_batch(Y, V, X, t)
            WR2 = W * R * R
            return WR2.sum(axis=1), (W * WR2).sum(axis=1)

        return q_root(q_slope, zero.copy(), q0 <= k - p, float(k - p), tol, fallback)
    t = settle(lambda t: fisher_step(method, Y, V, X, t), dl, np.zeros(n, dtype=bool), tol, fallback)
    return global_max(method, Y, V, X, t, R0)


def settle(step, t: np.ndarray, done: np.ndarray, tol, fallback) -> np.ndarray:
    """Every row's ``τ² ← max(0, τ² + step(τ²))`` at once, each row kept once its change is within
    its ``tol`` (rows ``done`` already are kept as given); a row not settled in 100 steps (rare)
    is ``fallback(i)``, the single fit's estimate."""
    def update(t):
        new = np.maximum(0.0, t + step(t))
        return new, np.abs(new - t) <= tol

    return _iterate(update, t, done, fallback, 100)


def _iterate(update, t: np.ndarray, done: np.ndarray, fallback, iters: int) -> np.ndarray:
    """Rows of ``t`` moved by ``update(t) -> (new, settled)`` until each is settled (rows ``done``
    kept as given); a row not settled in ``iters`` steps is ``fallback(i)``."""
    for _ in range(iters):
        new, settled = update(t)
        t = np.where(done, t, new)
        done = done | settled
        if done.all():
            return t
    t = t.copy()
    for i in np.flatnonzero(~done):
        t[i] = fallback(i)
    return t


def q_root(q_slope, t: np.ndarray, done: np.ndarray, target: float, tol, fallback, iters: int = 100) -> np.ndarray:
    """Every row's τ² ≥ 0 at which the generalized Q equals ``target`` (PM/EB; Q decreases in τ²),
    as :func:`._tau2._solve_q` finds it, from the starting values t (rows ``done``, whose
    ``Q(0) ≤ target``, kept as given): Newton steps ``(Q − target)/r'W²r`` (``q_slope(t)``: Q and
    ``r'W²r = −dQ/dτ²`` per row) inside the bracket of the τ² known to lie below the root
    (Q > target, from 0) and above it — a step that leaves the bracket, as an overshoot past 0
    does, is replaced by its midpoint. A row is kept once its step is within its ``tol`` and its Q
    within 10⁻⁸ of the target: a step alone can be tiny far from the root where ``r'W²r`` is huge
    (a very precise school's weight at τ² ≈ 0). A row not settled in ``iters`` steps (rare) is
    ``fallback(i)``, the single fit's estimate."""
    lo, hi = np.zeros_like(t), np.full_like(t, np.inf)

    def update(t):
        nonlocal lo, hi
        q, slope = q_slope(t)
        above = q > target
        lo, hi = np.where(above, np.maximum(lo, t), lo), np.where(above, hi, np.minimum(hi, t))
        new = t + np.where(slope > 0, (q - target) / np.where(slope > 0, slope, 1.0), 0.0)
        new = np.where((new < lo) | (new > hi), 0.5 * (lo + hi), new)
        return new, (np.abs(new - t) <= tol) & (np.abs(q - target) <= 1e-8 * target)

    return _iterate(update, t, done, fallback, iters)
