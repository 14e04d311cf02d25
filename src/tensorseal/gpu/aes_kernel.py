"""The AES-256-CTR CUDA kernel (source text) and its host-side key schedule.

The kernel decrypts, in place in GPU memory, a batch of GCM segments: one ``Job`` per
segment (destination pointer, length, 96-bit nonce); segment ``y`` of the launch is
``blockIdx.y`` and its 16-byte blocks are spread over ``blockIdx.x`` / ``threadIdx.x``
with a grid-stride loop. The keystream is GCM's: block ``b`` of a segment is
``E_K(nonce || u32be(c0 + b mod 2^32))`` with ``c0 = 2`` for a GCM segment (``J0 =
nonce || 1`` is for the tag; GCM increments only the low 32 bits).

It is the classic T-table AES (as in OpenSSL's ``aes_core.c``): the tables live in
``__constant__`` memory and every thread block copies them to shared memory first,
because table lookups with data-dependent indices serialise in the constant cache but
not (beyond bank conflicts) in shared memory. The 60 round-key words are expanded on the
host (FIPS-197 section 5.2) and read from shared memory (all threads read the same word:
a broadcast).

The same source compiles as C++ on the host (``TS_HOST_EMULATION``) so that tests can
run the kernel body, launch indexing included, without a GPU and compare it with
``cryptography`` (tests/test_gpu_pipeline.py); on a GPU it is compiled by NVRTC through
CuPy (see ``cuda.py``).

Side channels: table lookups are data-dependent memory accesses. On a GPU shared among
mutually distrustful tenants, timing of shared-memory bank conflicts is a theoretical
channel on the data key; the threat model of tensorseal (docs/FORMAT.md, section 15) is
storage and transit, not a co-resident attacker on the same GPU.
"""

from __future__ import annotations

import struct


def _xtime(a: int) -> int:
    a <<= 1
    return (a ^ 0x11B) & 0xFF if a & 0x100 else a


def _gmul(a: int, b: int) -> int:
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = _xtime(a)
        b >>= 1
    return r


def _sbox() -> list[int]:
    inv = [0] * 256
    for a in range(1, 256):
        for b in range(1, 256):
            if _gmul(a, b) == 1:
                inv[a] = b
                break
    out = []
    for a in range(256):
        x = inv[a]
        s = x
        for shift in range(1, 5):
            s ^= ((x << shift) | (x >> (8 - shift))) & 0xFF
        out.append(s ^ 0x63)
    return out


SBOX: tuple[int, ...] = tuple(_sbox())


def _te0() -> list[int]:
    return [(_gmul(s, 2) << 24) | (s << 16) | (s << 8) | _gmul(s, 3) for s in SBOX]


def _ror(w: int, n: int) -> int:
    return ((w >> n) | (w << (32 - n))) & 0xFFFFFFFF


TE0 = tuple(_te0())
TE1 = tuple(_ror(w, 8) for w in TE0)
TE2 = tuple(_ror(w, 16) for w in TE0)
TE3 = tuple(_ror(w, 24) for w in TE0)


def expand_key_256(key: bytes) -> list[int]:
    """The 60 round-key words of AES-256 (FIPS-197, 5.2), big-endian words.

    ``key`` must be 32 bytes; callers pass a file's data key (already 32 bytes).
    """
    assert len(key) == 32, "AES-256 takes a 32-byte key"
    w = list(struct.unpack(">8I", key))
    rcon = 1
    for i in range(8, 60):
        t = w[i - 1]
        if i % 8 == 0:
            t = ((t << 8) | (t >> 24)) & 0xFFFFFFFF
            t = _subword(t) ^ (rcon << 24)
            rcon = _xtime(rcon)
        elif i % 8 == 4:
            t = _subword(t)
        w.append(w[i - 8] ^ t)
    return w


def _subword(t: int) -> int:
    return (SBOX[t >> 24] << 24) | (SBOX[(t >> 16) & 0xFF] << 16) | (SBOX[(t >> 8) & 0xFF] << 8) | SBOX[t & 0xFF]


JOB = struct.Struct("<QQIIII")
"""One segment of a launch: dest pointer, length, then the initial counter block as four
big-endian words (stored as integers): the nonce and the low word, 2 for a GCM segment.
32 bytes, the layout of ``struct Job`` below."""


def _table(name: str, values: tuple[int, ...]) -> str:
    rows = ",".join(f"0x{v:08x}u" for v in values)
    return f"__constant__ u32 {name}[256] = {{{rows}}};\n"


KERNEL_NAME = "tensorseal_aes256_ctr"

SOURCE = (
    r"""
typedef unsigned int u32;
typedef unsigned long long u64;
#ifndef TS_BSWAP
#define TS_BSWAP(x) __byte_perm((x), 0u, 0x0123u)
#endif

struct Job { u64 dest; u64 length; u32 n0, n1, n2, c0; };  /* c0: low word of the first counter block */

"""
    + _table("cTe0", TE0)
    + _table("cTe1", TE1)
    + _table("cTe2", TE2)
    + _table("cTe3", TE3)
    + _table("cSbox", SBOX)
    + r"""
#define TS_ROUND(d0, d1, d2, d3, s0, s1, s2, s3, k)                                   \
    d0 = T0[s0 >> 24] ^ T1[(s1 >> 16) & 255u] ^ T2[(s2 >> 8) & 255u] ^ T3[s3 & 255u] ^ rk[k];     \
    d1 = T0[s1 >> 24] ^ T1[(s2 >> 16) & 255u] ^ T2[(s3 >> 8) & 255u] ^ T3[s0 & 255u] ^ rk[k + 1]; \
    d2 = T0[s2 >> 24] ^ T1[(s3 >> 16) & 255u] ^ T2[(s0 >> 8) & 255u] ^ T3[s1 & 255u] ^ rk[k + 2]; \
    d3 = T0[s3 >> 24] ^ T1[(s0 >> 16) & 255u] ^ T2[(s1 >> 8) & 255u] ^ T3[s2 & 255u] ^ rk[k + 3];

#define TS_LAST(s0, s1, s2, s3, k)                                                    \
    ((S[s0 >> 24] << 24) ^ (S[(s1 >> 16) & 255u] << 16) ^ (S[(s2 >> 8) & 255u] << 8) ^ S[s3 & 255u] ^ rk[k])

extern "C" __global__ void tensorseal_aes256_ctr(const u32* __restrict__ round_keys, const Job* __restrict__ jobs)
{
    __shared__ u32 T0[256], T1[256], T2[256], T3[256], S[256], rk[60];
    for (unsigned i = threadIdx.x; i < 256u; i += blockDim.x) {
        T0[i] = cTe0[i]; T1[i] = cTe1[i]; T2[i] = cTe2[i]; T3[i] = cTe3[i]; S[i] = cSbox[i];
    }
    for (unsigned i = threadIdx.x; i < 60u; i += blockDim.x) rk[i] = round_keys[i];
    __syncthreads();

    const Job job = jobs[blockIdx.y];
    unsigned char* const base = (unsigned char*)job.dest;
    const u64 blocks = (job.length + 15u) / 16u;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 b = (u64)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; b += stride) {
        u32 s0 = job.n0 ^ rk[0], s1 = job.n1 ^ rk[1], s2 = job.n2 ^ rk[2];
        u32 s3 = ((u32)b + job.c0) ^ rk[3];  /* GCM's inc32: only the low word counts, mod 2^32 */
        u32 t0, t1, t2, t3;
        TS_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, 4)
        TS_ROUND(s0, s1, s2, s3, t0, t1, t2, t3, 8)
        TS_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, 12)
        TS_ROUND(s0, s1, s2, s3, t0, t1, t2, t3, 16)
        TS_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, 20)
        TS_ROUND(s0, s1, s2, s3, t0, t1, t2, t3, 24)
        TS_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, 28)
        TS_ROUND(s0, s1, s2, s3, t0, t1, t2, t3, 32)
        TS_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, 36)
        TS_ROUND(s0, s1, s2, s3, t0, t1, t2, t3, 40)
        TS_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, 44)
        TS_ROUND(s0, s1, s2, s3, t0, t1, t2, t3, 48)
        TS_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, 52)
        /* keystream words, big-endian; memory holds bytes: swap to little-endian words */
        const u32 k0 = TS_BSWAP(TS_LAST(t0, t1, t2, t3, 56));
        const u32 k1 = TS_BSWAP(TS_LAST(t1, t2, t3, t0, 57));
        const u32 k2 = TS_BSWAP(TS_LAST(t2, t3, t0, t1, 58));
        const u32 k3 = TS_BSWAP(TS_LAST(t3, t0, t1, t2, 59));
        const u64 off = b * 16u;
        if (off + 16u <= job.length) {  /* dest is 16-byte aligned (checked on the host) */
            uint4* p = (uint4*)(base + off);
            uint4 v = *p;
            v.x ^= k0; v.y ^= k1; v.z ^= k2; v.w ^= k3;
            *p = v;
        } else {
            const u32 ks[4] = {k0, k1, k2, k3};
            for (u64 i = 0; off + i < job.length; ++i)
                base[off + i] ^= (unsigned char)(ks[i / 4u] >> (8u * (i % 4u)));
        }
    }
}
"""
)
