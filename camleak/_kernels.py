"""The numba kernels behind `camleak._native` (imported only through `_native.kernels()`, so
that a process that never scores many pairs never pays numba's import). See `_native`."""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

njit = numba.njit(cache=True, nogil=True)  # compiled once per machine (cached beside the module), the GIL released


@intrinsic
def _popcount(typingctx, x):  # type: ignore[no-untyped-def]
    """The population count of a uint64 (LLVM's ctpop: one POPCNT instruction)."""
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.zext(builder.ctpop(args[0]), context.get_value_type(types.int64))

    return sig, codegen


@njit
def _grow(buffer, size):  # type: ignore[no-untyped-def]
    """The buffer, twice as long, its first `size` items kept."""
    bigger = np.empty(max(16, 2 * len(buffer)), dtype=buffer.dtype)
    bigger[:size] = buffer[:size]
    return bigger


@njit
def _tile_scores(P, D, ip, idd, c0, c1, weight, out):  # type: ignore[no-untyped-def]
    """out[:c1 - c0] = weight x dHash distance (+ pHash distance unless P has no words) of the
    hash (ip, idd) to the columns c0:c1 of the word-major P (pHash words, n) and D (dHash
    words, n). One word at a time over contiguous column slices: LLVM vectorises these
    loops (AVX2 popcounts), ~1.4 ns a pair for 4 + 1 words on this machine's EPYC."""
    m = c1 - c0
    col = D[0, c0:c1]
    x = idd[0]
    for j in range(m):
        out[j] = _popcount(col[j] ^ x)
    for w in range(1, D.shape[0]):
        col = D[w, c0:c1]
        x = idd[w]
        for j in range(m):
            out[j] += _popcount(col[j] ^ x)
    if weight != 1:
        for j in range(m):
            out[j] *= weight
    for w in range(P.shape[0]):
        col = P[w, c0:c1]
        x = ip[w]
        for j in range(m):
            out[j] += _popcount(col[j] ^ x)


@njit
def link_rows(P, D, r0, r1, p_max, d_max, tile):  # type: ignore[no-untyped-def]
    """Pairs (i, j), r0 <= i < r1, i < j < n, with dHash distance <= d_max and pHash distance
    <= p_max, and both distances: what `cluster._within_pairs(..., p_max=, d_max=)` finds.
    P, D: word-major hashes (words, n). The dHash distances of a row to a tile of columns
    first (vectorised), the pHash words only for the columns within d_max (~6 % of the
    pairs of the benchmark's thumbnails), gathered without branches. Columns are taken `tile` at a time
    so they stay in cache while the rows pass over them."""
    n = P.shape[1]
    pw = P.shape[0]
    size = 0
    oi = np.empty(1024, dtype=np.int32)
    oj = np.empty(1024, dtype=np.int32)
    op = np.empty(1024, dtype=np.int16)
    od = np.empty(1024, dtype=np.int16)
    dd = np.empty(tile, dtype=np.int64)
    close = np.empty(tile, dtype=np.int64)
    nowords = P[:0]
    noword = P[:0, 0]
    for c0 in range(r0 + 1, n, tile):
        c1 = min(n, c0 + tile)
        for i in range(r0, min(r1, c1 - 1)):
            lo = max(c0, i + 1)
            _tile_scores(nowords, D, noword, D[:, i], lo, c1, 1, dd)
            found = 0
            for j in range(c1 - lo):  # the columns within d_max, without a branch to mispredict
                close[found] = j
                found += dd[j] <= d_max
            for x in range(found):
                j = lo + close[x]
                dp = 0
                for w in range(pw):
                    dp += _popcount(P[w, i] ^ P[w, j])
                if dp > p_max:
                    continue
                if size == len(oi):
                    oi = _grow(oi, size)
                    oj = _grow(oj, size)
                    op = _grow(op, size)
                    od = _grow(od, size)
                oi[size] = i
                oj[size] = j
                op[size] = dp
                od[size] = dd[j - lo]
                size += 1
    return oi[:size].copy(), oj[:size].copy(), op[:size].copy(), od[:size].copy()


@njit
def conflict_rows(P, D, cluster, queries, r0, r1, bound, weight, tile, own, near):  # type: ignore[no-untyped-def]
    """Every pair (i, j), r0 <= i < r1, i < j < n, of columns of the word-major P, D scoring
    within `bound`, read both ways as `cluster.conflicted` reads the pairs of targets: for an
    end that is a query (i or j < `queries`: the queries come first), the other end's cluster
    is its own (own[end] = the nearest such score) or another (bit cluster[other] of
    near[end] set: that cluster is a candidate). `own` and `near` are this thread's: the
    caller merges them (min, or)."""
    n = P.shape[1]
    score = np.empty(tile, dtype=np.int64)
    for c0 in range(r0 + 1, n, tile):
        c1 = min(n, c0 + tile)
        for i in range(r0, min(r1, c1 - 1)):
            lo = max(c0, i + 1)
            _tile_scores(P, D, P[:, i], D[:, i], lo, c1, weight, score)
            mine = cluster[i]
            row_query = i < queries
            for j in range(lo, c1):
                s = score[j - lo]
                if s > bound:
                    continue
                other = cluster[j]
                if other == mine:
                    if row_query and s < own[i]:
                        own[i] = s
                    if j < queries and s < own[j]:
                        own[j] = s
                    continue
                if row_query:
                    near[i, other >> 6] |= np.uint64(1) << np.uint64(other & 63)
                if j < queries:
                    near[j, mine >> 6] |= np.uint64(1) << np.uint64(mine & 63)


@njit
def candidate_scores(FP, FD, frames, near, start, stop, MP, MD, member_ids, cap, k0, k1, weight):  # type: ignore[no-untyped-def]
    """For queries k0 <= k < k1 (frame frames[k], column k of the word-major FP, FD): the
    nearest score over the members of every cluster c whose bit is set in near[k] (member
    columns start[c]:stop[c] of MP, MD), the frame itself skipped: the minimum over a
    query's candidates of `cluster._member_scores`, when it is at most cap[k]; otherwise
    cap[k] + 1 (the caller only needs to know it is above). The cap is what makes this
    cheap: a member whose weighted dHash distance alone is past the best so far is dropped
    after one vectorised popcount, its pHash words never read."""
    pw = MP.shape[0]
    out = np.empty(k1 - k0, dtype=np.int64)
    score = np.empty(4096, dtype=np.int64)
    close = np.empty(4096, dtype=np.int64)
    nowords = MP[:0]
    noword = MP[:0, 0]
    for k in range(k0, k1):
        f = frames[k]
        best = cap[k] + 1
        for word in range(near.shape[1]):
            bits = near[k, word]
            b = 0
            while bits:
                if bits & np.uint64(1):
                    c = word * 64 + b
                    for c0 in range(start[c], stop[c], 4096):
                        c1 = min(stop[c], c0 + 4096)
                        _tile_scores(nowords, MD, noword, FD[:, k], c0, c1, weight, score)
                        found = 0
                        for m in range(c1 - c0):  # members not already past the best on dHash alone
                            close[found] = m
                            found += score[m] < best
                        for x in range(found):
                            m = close[x]
                            s = score[m]
                            for w in range(pw):
                                s += _popcount(FP[w, k] ^ MP[w, c0 + m])
                                if s >= best:
                                    break
                            if s < best and member_ids[c0 + m] != f:
                                best = s
                bits >>= np.uint64(1)
                b += 1
        out[k - k0] = best
    return out


@njit
def member_rows(FP, FD, frames, first, stop, MP, MD, member_ids, k0, k1, weight):  # type: ignore[no-untyped-def]
    """For pairs k0 <= k < k1: the nearest score of frame frames[k] (column k of the
    word-major FP, FD) over the member columns first[k]:stop[k] of MP, MD, skipping the
    member whose id is frames[k] (int32 max when none is left): `cluster._member_scores`'
    result."""
    none = np.iinfo(np.int32).max
    out = np.full(k1 - k0, none, dtype=np.int64)
    score = np.empty(4096, dtype=np.int64)
    for k in range(k0, k1):
        f = frames[k]
        best = none
        for c0 in range(first[k], stop[k], 4096):
            c1 = min(stop[k], c0 + 4096)
            _tile_scores(MP, MD, FP[:, k], FD[:, k], c0, c1, weight, score)
            for m in range(c0, c1):
                s = score[m - c0]
                if s < best and member_ids[m] != f:
                    best = s
        out[k - k0] = best
    return out
