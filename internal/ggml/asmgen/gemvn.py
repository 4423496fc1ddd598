# Generates gemvn_amd64.s: the small-batch kernels of GemvN, for AVX2 and
# for AVX-512 VNNI. Each takes one weight row at a time, decodes each of its
# blocks once, straight from the encoding as stored, and multiplies the
# decoded block by C activation vectors (C = 2…4 on AVX2, 2…8 on AVX-512)
# before moving on, so that the weights are read once for all of them. (A Q8_0 form was slower than Gemm's repacked kernel at
# every batch size we measured: Q8_0 needs no decoding to share.)
import struct

import common

out = common.header("gemvn.py")
def e(s=""): out.append(s)

e("")
e("// AVX2 + FMA + F16C small-batch kernels. Arguments (ABI0), all kernels:")
e("//   w+0(FP) weight rows, stride+8(FP) bytes between rows, x+16(FP) the first")
e("//   activation vector, xStride+24(FP) bytes between activation vectors,")
e("//   nb+32(FP) blocks per row, out+40(FP) the output of row 0 for the first")
e("//   vector, outStride+48(FP) floats between the vectors' outputs,")
e("//   rows+56(FP) (at least 1).")
e("// Registers: SI current row, DI its first output, R11 rows left; AX walks")
e("// the blocks of the row, BX those of the first vector, the others at")
e("// BX+R8, BX+2·R8 and BX+R9 (R9 = 3·R8), vectors 4…7 likewise from R13 =")
e("// BX+4·R8; CX counts blocks; for up to 4 vectors R13 is instead the output")
e("// stride in bytes. Y0…Y3 (and Y16…Y19) hold the vectors' float sums, Y4…Y7")
e("// (and Y20…Y23) their integer sums within a block. The integer products are those of the Gemv")
e("// kernels (gemv_amd64.s), so each vector's sums are exact the same way.")
e("")


def data(name, bs):
    assert len(bs) % 8 == 0
    for i in range(0, len(bs), 8):
        v = 0
        for j in range(8):
            v |= bs[i+j] << (8*j)
        e("DATA %s<>+%d(SB)/8, $0x%016x" % (name, i, v))
    e("GLOBL %s<>(SB), RODATA|NOPTR, $%d" % (name, len(bs)))
    e("")

data("nnib0F", [0x0f]*32)
data("nbytes30", [0x30]*32)
m = []
for k in range(8):
    m += [2*k, 2*k+1]*16
data("nshufK4", m)
m = []
for p in range(8):
    m += [2*p]*8 + [2*p+1]*8
data("nshufQ6", m)
m = []
for c in range(4):
    m += [4*c, 4*c+1]*16 + [4*c+2, 4*c+3]*16
data("zshufK4", m)
data("zshift4", [0, 0]*16 + [4, 0]*16)
data("zshlQ6", [4, 0]*16 + [2, 0]*16)
data("zshrQ6", [0, 0]*16 + [2, 0]*16)
m = []
for h in range(2):
    for L in range(4):
        for w in range(8):
            m += [8*h + (4 if w >= 4 else 0) + L, 0]
data("zpermQ6p", m)


def col(j, off):
    """The address off bytes into the current block of activation vector j
    (vectors 4…7 from R13 = BX + 4·R8)."""
    return ["%d(BX)", "%d(BX)(R8*1)", "%d(BX)(R8*2)", "%d(BX)(R9*1)",
            "%d(R13)", "%d(R13)(R8*1)", "%d(R13)(R8*2)", "%d(R13)(R9*1)"][j] % off


def acc(j):
    """The float sums of vector j (vectors 4…7 in the AVX-512 registers)."""
    return "Y%d" % (j if j < 4 else 12 + j)


def macc(j):
    """The mins sums of vector j in the AVX-512 Q4_K kernels (ymm: one float
    per sub-block)."""
    return "Y%d" % [13, 25, 26, 27, 28, 29, 30, 31][j]


def isum(j):
    """The integer sums of vector j within a block."""
    return "Y%d" % (4 + j if j < 4 else 16 + j)


def prologue(name, C, extra=(), zmm=False, scr=False):
    if zmm:
        e("// func %s(w *byte, stride int, x *byte, xStride int, nb int, out *float32, outStride int, rows int, scr *float32, scrStride int, scrEnd uintptr, add int)" % name)
        e("TEXT ·%s(SB), NOSPLIT, $0-96" % name)
    else:
        e("// func %s(w *byte, stride int, x *byte, xStride int, nb int, out *float32, outStride int, rows int)" % name)
        e("TEXT ·%s(SB), NOSPLIT, $0-64" % name)
    e("\tMOVQ w+0(FP), SI")
    e("\tMOVQ xStride+24(FP), R8")
    e("\tLEAQ (R8)(R8*2), R9")
    e("\tMOVQ out+40(FP), DI")
    if C <= 4:
        e("\tMOVQ outStride+48(FP), R13")
        e("\tSHLQ $2, R13")
    e("\tMOVQ rows+56(FP), R11")
    for s in extra:
        e(s)
    e("%s_row:" % name)
    e("\tMOVQ SI, AX")
    e("\tMOVQ x+16(FP), BX")
    if C > 4:
        e("\tLEAQ (BX)(R8*4), R13")
    if scr:
        e("\tMOVQ scr+64(FP), CX")
    else:
        e("\tMOVQ nb+32(FP), CX")
    for j in range(C):
        if scr:
            e("\tVXORPS %s, %s, %s" % (macc(j), macc(j), macc(j)))
        if zmm:
            e("\tVXORPS Z%d, Z%d, Z%d" % (j, j, j))
        else:
            e("\tVXORPS %s, %s, %s" % (acc(j), acc(j), acc(j)))
    e("%s_block:" % name)


# Each block asks for the weights PREFETCH bytes ahead, as the Gemv kernels
# do (see gemv.py): the first group of vectors over a tile streams it from
# memory.
PREFETCH = 4096


def out_addrs8():
    """Sets DX to the bytes between the outputs of two vectors (outStride
    floats), R10 to three times that and R12 to vector 4's output, and
    returns the addresses of the row's outputs of vectors 0…7 (DI is
    vector 0's)."""
    e("\tMOVQ outStride+48(FP), DX")
    e("\tSHLQ $2, DX")
    e("\tLEAQ (DX)(DX*2), R10")
    e("\tLEAQ (DI)(DX*4), R12")
    return ["(DI)", "(DI)(DX*1)", "(DI)(DX*2)", "(DI)(R10*1)",
            "(R12)", "(R12)(DX*1)", "(R12)(DX*2)", "(R12)(R10*1)"]


def epilogue(name, C, size, zmm=False, scr=False, end_row=()):
    for off in range(0, size, 64):
        e("\tPREFETCHT0 %d(AX)" % (PREFETCH + off))
    e("\tADDQ $%d, AX" % size)
    e("\tADDQ $%d, BX" % xsize[name])
    if C > 4:
        e("\tADDQ $%d, R13" % xsize[name])
    if scr:
        e("\tADDQ scrStride+72(FP), CX")
        e("\tCMPQ CX, scrEnd+80(FP)")
        e("\tJNE %s_block" % name)
    else:
        e("\tDECQ CX")
        e("\tJNZ %s_block" % name)
    e("\t// horizontal sums, stored to the row's output in each vector's column")
    for j in range(C):
        if zmm:
            e("\tVEXTRACTF64X4 $1, Z%d, Y14" % j)
            e("\tVADDPS Y14, Y%d, Y%d" % (j, j))
            if scr:
                e("\tVSUBPS %s, Y%d, Y%d" % (macc(j), j, j))
            e("\tVEXTRACTF128 $1, Y%d, X14" % j)
            e("\tVADDPS X14, X%d, X%d" % (j, j))
        elif j < 4:
            e("\tVEXTRACTF128 $1, Y%d, X14" % j)
            e("\tVADDPS X14, X%d, X%d" % (j, j))
        else:
            # vectors 4…7 are summed into X4…X7 (their integer sums are spent)
            e("\tVEXTRACTF32X4 $1, %s, X14" % acc(j))
            e("\tVADDPS X14, X%d, X%d" % (12 + j, j))
        e("\tVMOVHLPS X%d, X%d, X14" % (j, j))
        e("\tVADDPS X14, X%d, X%d" % (j, j))
        e("\tVMOVSHDUP X%d, X14" % j)
        e("\tVADDSS X14, X%d, X%d" % (j, j))
    if C <= 4:
        if C > 3:
            e("\tLEAQ (R13)(R13*2), DX")
        dst = ["(DI)", "(DI)(R13*1)", "(DI)(R13*2)", "(DI)(DX*1)"]
    else:
        dst = out_addrs8()
    if zmm:
        e("\t// with add, the sums of the blocks before (a part of the row)")
        e("\tCMPQ add+88(FP), $0")
        e("\tJEQ %s_store" % name)
        for j in range(C):
            e("\tVADDSS %s, X%d, X%d" % (dst[j], j, j))
        e("%s_store:" % name)
    for j in range(C):
        e("\tVMOVSS X%d, %s" % (j, dst[j]))
    e("\tADDQ $4, DI")
    e("\tADDQ stride+8(FP), SI")
    for s_ in end_row:
        e(s_)
    e("\tDECQ R11")
    e("\tJNZ %s_row" % name)
    e("\tVZEROUPPER")
    e("\tRET")
    e("")


xsize = {}

# ---------- Q4_K ----------
def madd_add(scale, t, acc):
    """acc += the pairwise word products of t and scale (int32 sums)."""
    e("\tVPMADDWD %s, %s, %s" % (scale, t, t))
    e("\tVPADDD %s, %s, %s" % (t, acc, acc))


def q4k_scales():
    """Unpacks the 6-bit scales and mins of the 8 sub-blocks of the Q4_K
    block at AX into bytes: the scales in X8, the mins in X9 (low 64 bits)."""
    e("\t// the 6-bit scales (R10) and mins (R12) of the 8 sub-blocks")
    e("\tMOVL 4(AX), DX")
    e("\tMOVL 12(AX), R14")
    e("\tMOVL DX, R10")
    e("\tANDL $0x3f3f3f3f, R10")
    e("\tMOVL R14, R12")
    e("\tANDL $0x0f0f0f0f, R12")
    e("\tSHRL $6, DX")
    e("\tANDL $0x03030303, DX")
    e("\tSHLL $4, DX")
    e("\tORL DX, R12")
    e("\tSHLQ $32, R12")
    e("\tORQ R12, R10")
    e("\tMOVL 8(AX), DX")
    e("\tMOVL DX, R12")
    e("\tANDL $0x3f3f3f3f, R12")
    e("\tSHRL $4, R14")
    e("\tANDL $0x0f0f0f0f, R14")
    e("\tSHRL $6, DX")
    e("\tANDL $0x03030303, DX")
    e("\tSHLL $4, DX")
    e("\tORL DX, R14")
    e("\tSHLQ $32, R14")
    e("\tORQ R14, R12")
    e("\tVMOVQ R10, X8")
    e("\tVMOVQ R12, X9")


def q4k(C):
    name = "gemvnQ4Kx%dAVX2" % C
    xsize[name] = 292
    prologue(name, C, ["\tVMOVDQU nnib0F<>(SB), Y15"])
    q4k_scales()
    e("\tVPMOVZXBW X8, X8")
    e("\tVPMOVZXBW X9, X9")
    e("\tVINSERTI128 $1, X8, Y8, Y8")
    e("\t// the mins as word pairs (m0, m0, m1, m1, …, m7, m7), against the bsums")
    e("\tVPUNPCKLWD X9, X9, X10")
    e("\tVPUNPCKHWD X9, X9, X9")
    e("\tVINSERTI128 $1, X9, Y10, Y9")
    for c in range(4):
        e("\t// elements %d…%d: low nibbles (Y10), high nibbles (Y11)" % (64*c, 64*c + 63))
        e("\tVMOVDQU %d(AX), Y10" % (16 + 32*c))
        e("\tVPSRLW $4, Y10, Y11")
        e("\tVPAND Y15, Y10, Y10")
        e("\tVPAND Y15, Y11, Y11")
        e("\tVPSHUFB nshufK4<>+%d(SB), Y8, Y12" % (64*c))
        e("\tVPSHUFB nshufK4<>+%d(SB), Y8, Y13" % (64*c + 32))
        for j in range(C):
            e("\tVPMADDUBSW %s, Y10, Y14" % col(j, 4 + 64*c))
            if c == 0:
                e("\tVPMADDWD Y12, Y14, %s" % isum(j))
            else:
                madd_add("Y12", "Y14", isum(j))
            e("\tVPMADDUBSW %s, Y11, Y14" % col(j, 36 + 64*c))
            madd_add("Y13", "Y14", isum(j))
    e("\t// d (Y11) and dmin (Y12)")
    e("\tVMOVD (AX), X10")
    e("\tVCVTPH2PS X10, X10")
    e("\tVBROADCASTSS X10, Y11")
    e("\tVMOVSHDUP X10, X12")
    e("\tVBROADCASTSS X12, Y12")
    for j in range(C):
        e("\t// vector %d: += d·d8·Σ sc·Σ q·x, −= dmin·d8·Σ m·bsum" % j)
        e("\tVBROADCASTSS %s, Y13" % col(j, 0))
        e("\tVMULPS Y13, Y11, Y14")
        e("\tVCVTDQ2PS %s, %s" % (isum(j), isum(j)))
        e("\tVFMADD231PS Y14, %s, %s" % (isum(j), acc(j)))
        e("\tVPMADDWD %s, Y9, Y14" % col(j, 260))
        e("\tVCVTDQ2PS Y14, Y14")
        e("\tVMULPS Y13, Y12, Y13")
        e("\tVFNMADD231PS Y13, Y14, %s" % acc(j))
    epilogue(name, C, 144)


# ---------- Q4_K on 512-bit vectors ----------
# zpermK4c: for chunk c (0…3) of a block, the qwords of its 128 bytes of
# nibbles that hold elements 8c…8c+7 of each sub-block pair (32m+8c, m = 0…3,
# indices into the 16 qwords of two registers), in both halves.
m = []
for c in range(4):
    m += [c + 4*k for k in range(4)] * 2
data("zpermK4c", [b for q in m for b in (q, 0, 0, 0, 0, 0, 0, 0)])
# zpermQ8a, zpermQ8b: the qword indices of gemvnPermuteZ's two steps.
data("zpermQ8a", [b for q in [0, 8, 4, 12, 1, 9, 5, 13, 2, 10, 6, 14, 3, 11, 7, 15] for b in (q, 0, 0, 0, 0, 0, 0, 0)])
data("zpermQ8b", [b for q in [0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15] for b in (q, 0, 0, 0, 0, 0, 0, 0)])
# zpermK4s: the sub-block of each dword lane of such a chunk's weights.
zlanes = [0, 0, 2, 2, 4, 4, 6, 6, 1, 1, 3, 3, 5, 5, 7, 7]
data("zpermK4s", [b for sb in zlanes for b in (sb, 0, 0, 0)])


def q4kz(C):
    """The Q4_K kernel for AVX-512. A block's 128 bytes of nibbles are taken
    as four chunks: chunk c, gathered by one VPERMI2Q, is the 4 qwords at
    bytes 32m+8c (m = 0…3) in both halves, and shifting the upper half by 4
    and masking leaves 64 weights, elements 8c…8c+7 of sub-blocks 0, 2, 4, 6
    then of 1, 3, 5, 7: each dword lane holds 4 weights of the sub-block
    zpermK4s names, the same for every chunk. So one VPDPBUSD per chunk and
    vector sums 4 products into each lane (at most 16·15·128, exact), and
    the sub-block scales are applied once per block, as floats d·sc per
    lane. The activations must have been reordered alike by permutez, into
    blocks of 320 bytes on 64-byte boundaries, d at 0 and the quants at 64,
    so that no load of them straddles two cache lines. The mins term comes from the floats d8·bsum at CX (see
    bsumsz), into a ymm sum of its own per vector. Per vector: float sums in
    Z0…Z7, integer sums in Z16…Z23, mins sums in macc(j)."""
    name = "gemvnQ4Kx%dZ" % C
    xsize[name] = 320
    prologue(name, C, ["\tVMOVDQU64 zshift4<>(SB), Z24",
                       "\tVPBROADCASTB nnib0F<>(SB), Z15"], zmm=True, scr=True)
    q4k_scales()
    e("\t// the first 64 bytes of nibbles (Z10)")
    e("\tVMOVDQU64 16(AX), Z10")
    for c in range(4):
        e("\t// chunk %d: elements %d…%d of each sub-block (Z14)" % (c, 8*c, 8*c + 7))
        e("\tVMOVDQU64 zpermK4c<>+%d(SB), Z14" % (64*c))
        e("\tVPERMI2Q 80(AX), Z10, Z14")
        e("\tVPSRLVW Z24, Z14, Z14")
        e("\tVPANDD Z15, Z14, Z14")
        for j in range(C):
            if c == 0:
                e("\tVPXORD Z%d, Z%d, Z%d" % (16 + j, 16 + j, 16 + j))
            e("\tVPDPBUSD %s, Z14, Z%d" % (col(j, 64 + 64*c), 16 + j))
    e("\t// d·sc of each lane's sub-block (Z8); the mins as floats times dmin")
    e("\t// (Y9), against each vector's d8·bsum of the sub-blocks at CX")
    e("\tVPMOVZXBD X8, Y8")
    e("\tVMOVDQU64 zpermK4s<>(SB), Z14")
    e("\tVPERMD Z8, Z14, Z8")
    e("\tVCVTDQ2PS Z8, Z8")
    e("\tVMOVD (AX), X10")
    e("\tVCVTPH2PS X10, X10")
    e("\tVBROADCASTSS X10, Z11")
    e("\tVMULPS Z11, Z8, Z8")
    e("\tVMOVSHDUP X10, X12")
    e("\tVBROADCASTSS X12, Y12")
    e("\tVPMOVZXBD X9, Y9")
    e("\tVCVTDQ2PS Y9, Y9")
    e("\tVMULPS Y12, Y9, Y9")
    for j in range(C):
        e("\t// vector %d: += d8·d·sc·Σ q·x; its mins sums += dmin·m·d8·bsum" % j)
        e("\tVCVTDQ2PS Z%d, Z%d" % (16 + j, 16 + j))
        e("\tVMULPS Z8, Z%d, Z%d" % (16 + j, 16 + j))
        e("\tVFMADD231PS.BCST %s, Z%d, Z%d" % (col(j, 0), 16 + j, j))
        e("\tVFMADD231PS %d(CX), Y9, %s" % (32*j, macc(j)))
    epilogue(name, C, 144, zmm=True, scr=True)


# ---------- Q6_K ----------
def q6k(C):
    name = "gemvnQ6Kx%dAVX2" % C
    xsize[name] = 292
    prologue(name, C)
    e("\t// the 16 int8 scales (X8); the −32 offset: start from Σ (−32·scale)·bsum")
    e("\tVMOVDQU 192(AX), X8")
    e("\tVPMOVSXBW X8, Y9")
    e("\tVPSLLW $5, Y9, Y9")
    e("\tVPXOR Y15, Y15, Y15")
    e("\tVPSUBW Y9, Y15, Y9")
    for j in range(C):
        e("\tVPMADDWD %s, Y9, %s" % (col(j, 260), isum(j)))
    for h in range(2):
        e("\t// elements %d…%d" % (128*h, 128*h + 127))
        e("\tVMOVDQU %d(AX), Y10" % (64*h))
        e("\tVMOVDQU %d(AX), Y11" % (64*h + 32))
        e("\tVMOVDQU %d(AX), Y12" % (128 + 32*h))
        for k in range(4):
            src = "Y10" if k in (0, 2) else "Y11"
            if k < 2:
                e("\tVPAND nnib0F<>(SB), %s, Y13" % src)
            else:
                e("\tVPSRLW $4, %s, Y13" % src)
                e("\tVPAND nnib0F<>(SB), Y13, Y13")
            if k == 0:
                e("\tVPSLLW $4, Y12, Y14")
                e("\tVPAND nbytes30<>(SB), Y14, Y14")
            elif k == 1:
                e("\tVPSLLW $2, Y12, Y14")
                e("\tVPAND nbytes30<>(SB), Y14, Y14")
            elif k == 2:
                e("\tVPAND nbytes30<>(SB), Y12, Y14")
            else:
                e("\tVPSRLW $2, Y12, Y14")
                e("\tVPAND nbytes30<>(SB), Y14, Y14")
            e("\tVPOR Y14, Y13, Y13")
            e("\tVPSHUFB nshufQ6<>+%d(SB), X8, X14" % (16*(4*h + k)))
            e("\tVPMOVSXBW X14, Y14")
            for j in range(C):
                e("\tVPMADDUBSW %s, Y13, Y15" % col(j, 4 + 128*h + 32*k))
                madd_add("Y14", "Y15", isum(j))
    e("\t// d (Y9)")
    e("\tMOVWLZX 208(AX), DX")
    e("\tVMOVD DX, X9")
    e("\tVCVTPH2PS X9, X9")
    e("\tVBROADCASTSS X9, Y9")
    for j in range(C):
        e("\tVBROADCASTSS %s, Y10" % col(j, 0))
        e("\tVMULPS Y10, Y9, Y10")
        e("\tVCVTDQ2PS %s, %s" % (isum(j), isum(j)))
        e("\tVFMADD231PS Y10, %s, %s" % (isum(j), acc(j)))
    epilogue(name, C, 210)


# ---------- Q6_K on 512-bit vectors ----------
def q6kz(C):
    """The Q6_K kernel for AVX-512: 64 consecutive weights (four sub-blocks)
    are rebuilt in one 512-bit register from 64 bytes of low bits and the 32
    bytes of high bits shifted two ways. VPDPBUSD sums each 4 products (at
    most 4·63·128 = 32256, still a word), two such registers are packed
    into words and one VPDPWSSD applies the scales, which VPERMW spreads
    over the words: three integer multiplies per 128 weights and vector
    rather than four (about 3 % faster measured). The activations must have
    been copied by alignz into blocks of 320 bytes on 64-byte boundaries (d
    at 0, bsums at 16, quants at 64), so that no load of them straddles two
    cache lines. Per vector: float sums in Z0…Z7, integer sums in
    Z16…Z23."""
    name = "gemvnQ6Kx%dZ" % C
    xsize[name] = 320
    prologue(name, C, ["\tVPBROADCASTB nnib0F<>(SB), Z24",
                       "\tVPBROADCASTB nbytes30<>(SB), Z26",
                       "\tVMOVDQU64 zshlQ6<>(SB), Z27",
                       "\tVMOVDQU64 zshrQ6<>(SB), Z28"], zmm=True)
    e("\t// the 16 int8 scales as words (Z25); the −32 offset: start from Σ (−32·scale)·bsum")
    e("\tVPMOVSXBW 192(AX), Y25")
    e("\tVPSLLW $5, Y25, Y9")
    e("\tVPXOR Y15, Y15, Y15")
    e("\tVPSUBW Y9, Y15, Y9")
    for j in range(C):
        e("\tVPMADDWD %s, Y9, Y%d" % (col(j, 16), 16 + j))
    for h in range(2):
        e("\t// low bits (Z10) and high bits (Z11, in both halves) of elements %d…%d" % (128*h, 128*h + 127))
        e("\tVMOVDQU64 %d(AX), Z10" % (64*h))
        e("\tVBROADCASTI64X4 %d(AX), Z11" % (128 + 32*h))
        for p in range(2):
            g = 2*h + p
            r = "Z12" if p == 0 else "Z8"
            e("\t// elements %d…%d (%s)" % (64*g, 64*g + 63, r))
            if p == 0:
                e("\tVPSLLVW Z27, Z11, Z13")
                e("\tVPANDD Z24, Z10, %s" % r)
            else:
                e("\tVPSRLVW Z28, Z11, Z13")
                e("\tVPSRLW $4, Z10, %s" % r)
                e("\tVPANDD Z24, %s, %s" % (r, r))
            e("\tVPANDD Z26, Z13, Z13")
            e("\tVPORD Z13, %s, %s" % (r, r))
        e("\t// the scales of sub-blocks %d…%d against the packed sums of 4 (Z14)" % (8*h, 8*h + 7))
        e("\tVMOVDQU64 zpermQ6p<>+%d(SB), Z14" % (64*h))
        e("\tVPERMW Z25, Z14, Z14")
        for j in range(C):
            e("\tVPXORD Z13, Z13, Z13")
            e("\tVPXORD Z15, Z15, Z15")
            e("\tVPDPBUSD %s, Z12, Z13" % col(j, 64 + 128*h))
            e("\tVPDPBUSD %s, Z8, Z15" % col(j, 128 + 128*h))
            e("\tVPACKSSDW Z15, Z13, Z13")
            e("\tVPDPWSSD Z14, Z13, Z%d" % (16 + j))
    e("\t// d (Z9)")
    e("\tMOVWLZX 208(AX), DX")
    e("\tVMOVD DX, X9")
    e("\tVCVTPH2PS X9, X9")
    e("\tVBROADCASTSS X9, Z9")
    for j in range(C):
        e("\t// vector %d: += d8·d·Σ sc·Σ q·x" % j)
        e("\tVCVTDQ2PS Z%d, Z%d" % (16 + j, 16 + j))
        e("\tVMULPS Z9, Z%d, Z%d" % (16 + j, 16 + j))
        e("\tVFMADD231PS.BCST %s, Z%d, Z%d" % (col(j, 0), 16 + j, j))
    epilogue(name, C, 210, zmm=True)


for C in (2, 3, 4):
    q4k(C)
for C in (2, 3, 4):
    q6k(C)
e("// The kernels for CPUs with AVX-512 VNNI work on 512-bit vectors: 64")
e("// consecutive weights of a block per register, VPDPWSSD applying the")
e("// sub-block scales and adding to the sums in one instruction, and the 16")
e("// more vector registers holding the sums of up to 8 activation vectors.")
e("// Same arguments and general registers as above, and three more:")
e("// scr+64(FP), scrStride+72(FP) and scrEnd+80(FP), the floats d8·bsum that")
e("// the Q4_K kernels read (there CX walks them instead of counting blocks),")
e("// and add+88(FP), not 0 to add the sums to the outputs rather than store")
e("// them (a row taken in parts). Vector j's float sums are in Zj, its")
e("// integer sums within a block in Z(16+j).")
e("")


def bsumsz():
    """gemvnBsumsZ: for C activation vectors (Q8_K), the floats d8·bsum of
    each sub-block of 32 (8 per block), which the AVX-512 Q4_K kernels weigh
    by each block's dmin·m, stored block by block: block b of vector c at
    dst + b·dstStride + 32·c bytes. Made once per call of GemvN, they replace
    a multiply-add, a conversion and a broadcast per vector, block and row by
    one multiply-add."""
    e("// func gemvnBsumsZ(x *byte, xStride int, nb int, cols int, dst *float32, dstStride int)")
    e("TEXT ·gemvnBsumsZ(SB), NOSPLIT, $0-48")
    e("\tMOVQ x+0(FP), SI")
    e("\tMOVQ dst+32(FP), DI")
    e("\tMOVQ cols+24(FP), R11")
    e("\t// words of 1 (Y1), to add the bsums in pairs")
    e("\tVPCMPEQW Y1, Y1, Y1")
    e("\tVPABSW Y1, Y1")
    e("gemvnBsumsZ_col:")
    e("\tMOVQ SI, BX")
    e("\tMOVQ DI, DX")
    e("\tMOVQ nb+16(FP), CX")
    e("gemvnBsumsZ_block:")
    e("\tVPMADDWD 260(BX), Y1, Y0")
    e("\tVCVTDQ2PS Y0, Y0")
    e("\tVMULPS.BCST (BX), Y0, Y0")
    e("\tVMOVUPS Y0, (DX)")
    e("\tADDQ $292, BX")
    e("\tADDQ dstStride+40(FP), DX")
    e("\tDECQ CX")
    e("\tJNZ gemvnBsumsZ_block")
    e("\tADDQ xStride+8(FP), SI")
    e("\tADDQ $32, DI")
    e("\tDECQ R11")
    e("\tJNZ gemvnBsumsZ_col")
    e("\tVZEROUPPER")
    e("\tRET")
    e("")


def permutez():
    """gemvnPermuteZ: the activations of the AVX-512 Q4_K kernels, cols Q8_K
    vectors reordered into blocks of 320 bytes (see gemvnPermBlock in
    gemvn_amd64.go; gemvnPermuteQ8K in the tests does the same in Go). Per
    block: 4 loads of its 256 bytes of quants (two sub-blocks each), 4
    VPERMI2Q that pair qwords of sub-blocks 0…3 and of 4…7 for two chunks
    each, and 4 that merge those into the 4 chunks. (In Go it cost as much
    as a sixth of the kernels' time over the engine's bands of rows, each of
    which reorders the activations anew.)"""
    e("// func gemvnPermuteZ(x *byte, xStride int, nb int, cols int, dst *byte)")
    e("TEXT ·gemvnPermuteZ(SB), NOSPLIT, $0-40")
    e("\tMOVQ x+0(FP), SI")
    e("\tMOVQ dst+32(FP), DI")
    e("\tMOVQ cols+24(FP), R11")
    e("\tVMOVDQU64 zpermQ8a<>(SB), Z4")
    e("\tVMOVDQU64 zpermQ8a<>+64(SB), Z5")
    e("\tVMOVDQU64 zpermQ8b<>(SB), Z6")
    e("\tVMOVDQU64 zpermQ8b<>+64(SB), Z7")
    e("gemvnPermuteZ_col:")
    e("\tMOVQ SI, BX")
    e("\tMOVQ nb+16(FP), CX")
    e("gemvnPermuteZ_block:")
    e("\tMOVL (BX), AX")
    e("\tMOVL AX, (DI)")
    for r in range(4):
        e("\tVMOVDQU64 %d(BX), Z%d" % (4 + 64*r, r))
    e("\t// chunks 0 and 1 of sub-blocks 0…3 (Z8) and 4…7 (Z9), then 2 and 3 (Z10, Z11)")
    for dst, idx, t1, t2 in ((8, 4, 0, 1), (9, 4, 2, 3), (10, 5, 0, 1), (11, 5, 2, 3)):
        e("\tVMOVDQA64 Z%d, Z%d" % (idx, dst))
        e("\tVPERMI2Q Z%d, Z%d, Z%d" % (t2, t1, dst))
    for c, (idx, t1, t2) in enumerate(((6, 8, 9), (7, 8, 9), (6, 10, 11), (7, 10, 11))):
        e("\tVMOVDQA64 Z%d, Z12" % idx)
        e("\tVPERMI2Q Z%d, Z%d, Z12" % (t2, t1))
        e("\tVMOVDQU64 Z12, %d(DI)" % (64 + 64*c))
    e("\tADDQ $292, BX")
    e("\tADDQ $320, DI")
    e("\tDECQ CX")
    e("\tJNZ gemvnPermuteZ_block")
    e("\tADDQ xStride+8(FP), SI")
    e("\tDECQ R11")
    e("\tJNZ gemvnPermuteZ_col")
    e("\tVZEROUPPER")
    e("\tRET")
    e("")


def alignz():
    """gemvnAlignZ: the activations of the AVX-512 Q6_K kernels, cols Q8_K
    vectors copied unchanged into blocks of 320 bytes on 64-byte boundaries
    (see gemvnAlignBlock in gemvn_amd64.go): each block's d at 0, its bsums
    at 16 and its quants at 64, so that each of the kernels' loads lies in
    one cache line (in Q8_K's 292-byte blocks every 64-byte load of the
    quants straddles two)."""
    e("// func gemvnAlignZ(x *byte, xStride int, nb int, cols int, dst *byte)")
    e("TEXT ·gemvnAlignZ(SB), NOSPLIT, $0-40")
    e("\tMOVQ x+0(FP), SI")
    e("\tMOVQ dst+32(FP), DI")
    e("\tMOVQ cols+24(FP), R11")
    e("gemvnAlignZ_col:")
    e("\tMOVQ SI, BX")
    e("\tMOVQ nb+16(FP), CX")
    e("gemvnAlignZ_block:")
    e("\tMOVL (BX), AX")
    e("\tMOVL AX, (DI)")
    e("\tVMOVDQU 260(BX), Y4")
    e("\tVMOVDQU Y4, 16(DI)")
    for r in range(4):
        e("\tVMOVDQU64 %d(BX), Z%d" % (4 + 64*r, r))
    for r in range(4):
        e("\tVMOVDQU64 Z%d, %d(DI)" % (r, 64 + 64*r))
    e("\tADDQ $292, BX")
    e("\tADDQ $320, DI")
    e("\tDECQ CX")
    e("\tJNZ gemvnAlignZ_block")
    e("\tADDQ xStride+8(FP), SI")
    e("\tDECQ R11")
    e("\tJNZ gemvnAlignZ_col")
    e("\tVZEROUPPER")
    e("\tRET")
    e("")


# ---------- Q6_K on 512-bit vectors with GFNI: one lane per sub-block ----------
# Lane L (0…15) of every chunk register belongs to sub-block L of the block
# (h = L/8 its half, t = L%8 its place in the half); chunk c (0…3) holds
# elements 4c…4c+3 of each sub-block. Element l of half h sits in the low
# (l < 64) or high nibble of ql byte 64h + l%64 and in bits 2·(l/32) of qh
# byte 32h + l%32, so those 4 elements of sub-block (h, t) are the 4 bytes of
# ql dword 16h + 4·(t%4) + c and of qh dword 8h + 4·(t%2) + c.
def dwords(f):
    return [b for L in range(16) for b in (f(L), 0, 0, 0)]

m = []
for c in range(4):
    m += dwords(lambda L: 16*(L//8) + 4*(L % 4) + c)
data("zq6ql", m)
m = []
for c in range(4):
    m += dwords(lambda L: 8*(L//8) + 4*(L % 2) + c)
data("zq6qh", m)


def affine(src_bit):
    """The GF(2) matrix (a qword) of VGF2P8AFFINEQB that moves bit
    src_bit[i] of each byte to bit i, for the i it names, and clears the
    others: row 7−i of the matrix selects the input bits of output bit i."""
    rows = [0]*8
    for i, b in src_bit.items():
        rows[7 - i] = 1 << b
    return rows

# zq6mat: per qword k (lanes 2k and 2k+1, t = 2k%8), the matrix taking the
# nibble of ql (low for t < 4, high otherwise) to bits 0…3, then the one
# taking bits 2·(t/2) and 2·(t/2)+1 of qh to bits 4 and 5.
m = []
for k in range(8):
    n = (k % 4) // 2
    m += affine({i: 4*n + i for i in range(4)})
for k in range(8):
    f = k % 4
    m += affine({4: 2*f, 5: 2*f + 1})
data("zq6mat", m)
# zq6act: for chunk c, the dword of the activations' quants that lane L takes
# from either 128 bytes (sub-blocks 0…7 or 8…15): 4·(L%8) + c.
m = []
for c in range(4):
    m += dwords(lambda L: 4*(L % 8) + c)
data("zq6act", m)


def q6prepz():
    """gemvnQ6PrepZ: the activations of the GFNI Q6_K kernels, cols Q8_K
    vectors rewritten into blocks of 320 bytes on 64-byte boundaries (see
    gemvnQ6Block in gemvn_amd64.go): at 0 the 16 int32 −32·bsum, which
    start each sub-block's integer sum with its share of the −32 offset of
    Q6_K's quants; from 64 the quants as 4 chunks of 64 bytes, chunk c
    holding elements 4c…4c+3 of sub-block L in dword L. Each block's d goes
    to d8[b·cols + c] (block b of vector c)."""
    e("// func gemvnQ6PrepZ(x *byte, xStride int, nb int, cols int, dst *byte, d8 *float32)")
    e("TEXT ·gemvnQ6PrepZ(SB), NOSPLIT, $0-48")
    e("\tMOVQ x+0(FP), SI")
    e("\tMOVQ dst+32(FP), DI")
    e("\tMOVQ d8+40(FP), R10")
    e("\tMOVQ cols+24(FP), R11")
    e("\tLEAQ (R11*4), R12")
    for c in range(4):
        e("\tVMOVDQU64 zq6act<>+%d(SB), Z%d" % (64*c, 8 + c))
    e("\tVPXORD Z15, Z15, Z15")
    e("gemvnQ6PrepZ_col:")
    e("\tMOVQ SI, BX")
    e("\tMOVQ R10, DX")
    e("\tMOVQ nb+16(FP), CX")
    e("gemvnQ6PrepZ_block:")
    e("\tMOVL (BX), AX")
    e("\tMOVL AX, (DX)")
    e("\tVPMOVSXWD 260(BX), Z4")
    e("\tVPSLLD $5, Z4, Z4")
    e("\tVPSUBD Z4, Z15, Z4")
    e("\tVMOVDQU64 Z4, (DI)")
    for r in range(4):
        e("\tVMOVDQU64 %d(BX), Z%d" % (4 + 64*r, r))
    for c in range(4):
        e("\t// chunk %d: sub-blocks 0…7 from Z0, Z1 (Z12), 8…15 from Z2, Z3 (Z13)" % c)
        e("\tVMOVDQA64 Z%d, Z12" % (8 + c))
        e("\tVPERMI2D Z1, Z0, Z12")
        e("\tVMOVDQA64 Z%d, Z13" % (8 + c))
        e("\tVPERMI2D Z3, Z2, Z13")
        e("\tVSHUFI64X2 $0xe4, Z13, Z12, Z12")
        e("\tVMOVDQU64 Z12, %d(DI)" % (64 + 64*c))
    e("\tADDQ $292, BX")
    e("\tADDQ $320, DI")
    e("\tADDQ R12, DX")
    e("\tDECQ CX")
    e("\tJNZ gemvnQ6PrepZ_block")
    e("\tADDQ $4, R10")
    e("\tADDQ xStride+8(FP), SI")
    e("\tDECQ R11")
    e("\tJNZ gemvnQ6PrepZ_col")
    e("\tVZEROUPPER")
    e("\tRET")
    e("")


def q6kg_epilogue(name, C, size):
    """epilogue for the GFNI Q6_K kernels: R14 walks the activations' d8
    (scrStride bytes from one block's to the next's) and starts each row
    again at scr. With 8 vectors, the row's 8 float sums are reduced
    together, halving and pairing the vectors' registers as they go (30
    instructions rather than 64 for eight separate reductions), into lane 0
    of X0…X7."""
    e("\tADDQ scrStride+72(FP), R14")
    if C < 8:
        epilogue(name, C, size, zmm=True, end_row=["\tMOVQ scr+64(FP), R14"])
        return
    for off in range(0, size, 64):
        e("\tPREFETCHT0 %d(AX)" % (PREFETCH + off))
    e("\tADDQ $%d, AX" % size)
    e("\tADDQ $%d, BX" % xsize[name])
    e("\tADDQ $%d, R13" % xsize[name])
    e("\tDECQ CX")
    e("\tJNZ %s_block" % name)
    e("\t// horizontal sums: the vectors' halves added in pairs (Z0, Z2, Z4, Z6),")
    e("\t// their quarters in fours (Z0: vectors 0…3, Z4: 4…7, one per 128 bits),")
    e("\t// then within each 128 bits: vector g at 0, vector 4+g at 2")
    for a in (0, 2, 4, 6):
        e("\tVSHUFF64X2 $0x44, Z%d, Z%d, Z8" % (a + 1, a))
        e("\tVSHUFF64X2 $0xee, Z%d, Z%d, Z9" % (a + 1, a))
        e("\tVADDPS Z9, Z8, Z%d" % a)
    for a in (0, 4):
        e("\tVSHUFF64X2 $0x88, Z%d, Z%d, Z8" % (a + 2, a))
        e("\tVSHUFF64X2 $0xdd, Z%d, Z%d, Z9" % (a + 2, a))
        e("\tVADDPS Z9, Z8, Z%d" % a)
    e("\tVSHUFPS $0x88, Z4, Z0, Z8")
    e("\tVSHUFPS $0xdd, Z4, Z0, Z9")
    e("\tVADDPS Z9, Z8, Z0")
    e("\tVPERMILPS $0xb1, Z0, Z8")
    e("\tVADDPS Z8, Z0, Z0")
    for g in (1, 2, 3):
        e("\tVEXTRACTF32X4 $%d, Z0, X%d" % (g, g))
    for g in range(4):
        e("\tVMOVHLPS X%d, X%d, X%d" % (g, g, 4 + g))
    dst = out_addrs8()
    e("\t// with add, the sums of the blocks before (a part of the row)")
    e("\tCMPQ add+88(FP), $0")
    e("\tJEQ %s_store" % name)
    for j in range(8):
        e("\tVADDSS %s, X%d, X%d" % (dst[j], j, j))
    e("%s_store:" % name)
    for j in range(8):
        e("\tVMOVSS X%d, %s" % (j, dst[j]))
    e("\tADDQ $4, DI")
    e("\tADDQ stride+8(FP), SI")
    e("\tMOVQ scr+64(FP), R14")
    e("\tDECQ R11")
    e("\tJNZ %s_row" % name)
    e("\tVZEROUPPER")
    e("\tRET")
    e("")


def q6kg(C):
    """The Q6_K kernel for AVX-512 with GFNI, in the manner of q4kz: each
    chunk of 64 weights is gathered from ql (VPERMI2D) and qh (VPERMD), a
    VGF2P8AFFINEQB per source with a matrix per qword takes each lane's
    nibble to bits 0…3 and its two high bits to bits 4 and 5, and an OR
    joins them, so that every dword lane holds 4 weights of the one
    sub-block it stands for in the whole block. One VPDPBUSD per chunk and
    vector then sums 4 products into each lane, on top of the lane's
    −32·bsum (at most 16·32·128 in magnitude, exact), and the scales are
    applied once per block as floats d·sc. The activations must have been
    rewritten by gemvnQ6PrepZ; R14 walks their d8 (scr+64(FP) on, block
    by block). Per vector: float sums in Z0…Z7, integer sums
    in Z16…Z23."""
    name = "gemvnQ6Kx%dZG" % C
    xsize[name] = 320
    prologue(name, C, ["\tVMOVDQU64 zq6qh<>+%d(SB), Z%d" % (64*c, 24 + c) for c in range(4)] +
             ["\tVMOVDQU64 zq6mat<>(SB), Z28",
              "\tVMOVDQU64 zq6mat<>+64(SB), Z29",
              "\tMOVQ scr+64(FP), R14"], zmm=True)
    e("\t// ql (Z10, Z11)")
    e("\tVMOVDQU64 (AX), Z10")
    e("\tVMOVDQU64 64(AX), Z11")
    for c in range(4):
        e("\t// chunk %d: elements %d…%d of each sub-block (Z12)" % (c, 4*c, 4*c + 3))
        e("\tVMOVDQU64 zq6ql<>+%d(SB), Z13" % (64*c))
        e("\tVPERMI2D Z11, Z10, Z13")
        e("\tVPERMD 128(AX), Z%d, Z14" % (24 + c))
        e("\tVGF2P8AFFINEQB $0, Z28, Z13, Z13")
        e("\tVGF2P8AFFINEQB $0, Z29, Z14, Z14")
        e("\tVPORD Z14, Z13, Z12")
        for j in range(C):
            if c == 0:
                e("\tVMOVDQA32 %s, Z%d" % (col(j, 0), 16 + j))
            e("\tVPDPBUSD %s, Z12, Z%d" % (col(j, 64 + 64*c), 16 + j))
    e("\t// d·sc of each lane's sub-block (Z8)")
    e("\tVPMOVSXBD 192(AX), Z8")
    e("\tVCVTDQ2PS Z8, Z8")
    e("\tMOVWLZX 208(AX), DX")
    e("\tVMOVD DX, X9")
    e("\tVCVTPH2PS X9, X9")
    e("\tVBROADCASTSS X9, Z9")
    e("\tVMULPS Z9, Z8, Z8")
    for j in range(C):
        e("\t// vector %d: += d8·d·sc·Σ (q−32)·x" % j)
        e("\tVCVTDQ2PS Z%d, Z%d" % (16 + j, 16 + j))
        e("\tVMULPS Z8, Z%d, Z%d" % (16 + j, 16 + j))
        e("\tVFMADD231PS.BCST %d(R14), Z%d, Z%d" % (4*j, 16 + j, j))
    q6kg_epilogue(name, C, 210)


bsumsz()
permutez()
alignz()
for C in range(2, 9):
    q4kz(C)
for C in range(2, 9):
    q6kz(C)
q6prepz()
for C in range(2, 9):
    q6kg(C)

# ---------- Q4_K on 512-bit vectors, two activation vectors per register ----------
# With 8 vectors the AVX-512 Q4_K kernels above spend as many instructions
# per block on each vector's float sums as on its integer products. The
# kernels below hold a chunk of 32 weights twice, once in each 256-bit half,
# against the same chunk of two vectors side by side (a pair), so that one
# VPDPBUSD, and per block one conversion, one multiply by the scales and one
# multiply-add of d8, serve both vectors of the pair.
#
# Chunk c (0…7) of a block is elements 4c…4c+3 of each of its 8 sub-blocks:
# dword lane i of each half belongs to sub-block pairSB[i]. Sub-blocks 2m and
# 2m+1 are the low and high nibbles of the block's bytes of nibbles 32m…32m+31,
# so lanes 0…3 take the dwords at bytes 32m+4c (m = 0…3) masked to their low
# nibbles and lanes 4…7 the same dwords masked to their high nibbles: 16
# times the weights of sub-blocks 1, 3, 5, 7, still bytes, which one VPANDD
# picks out (shifting them down would cost an instruction on the port the
# VPDPBUSD take). Those lanes' sums are 16 times too large (at most
# 32·240·128, exact), and the d8 of those lanes is stored divided by 16, which
# is exact too: the float sums come out as if the nibbles had been shifted.
pairSB = [0, 2, 4, 6, 1, 3, 5, 7]
# zq4pGather: for chunks 2k and 2k+1 (one per half), the dwords of the 128
# bytes of nibbles (two registers) that each lane reads.
data("zq4pGather", [b for k in range(4) for l in range(16)
                    for b in ((8 * (l % 4) + 2*k + l // 8), 0, 0, 0)])
# zq4pNib: the mask of each lane's nibbles.
data("zq4pNib", ([0x0f] * 16 + [0xf0] * 16) * 2)
# zq4pD8: the factors of d8 in the lanes of a half.
data("zq4pD8", [b for f in [1.0] * 4 + [1 / 16] * 4 for b in struct.pack("<f", f)])
# zq4pDup: spreads d, dmin (floats 0, 1) over the scales and the mins;
# zq4pSc, zq4pMin: the floats d·sc in the lanes' order and dmin·m in the
# sub-blocks' order, both in each half.
data("zq4pDup", [b for l in range(16) for b in (l // 8, 0, 0, 0)])
data("zq4pSc", [b for l in range(16) for b in (pairSB[l % 8], 0, 0, 0)])
data("zq4pMin", [b for l in range(16) for b in (8 + l % 8, 0, 0, 0)])

# A pair's block of activations as gemvnPairQ4K lays them out (see
# gemvnPairBlock in gemvn_amd64.go): at 0 the two vectors' d8 for each lane
# (d8/16 in lanes 4…7), at 64 their floats d8·bsum per sub-block (in the
# sub-blocks' order), at 128+64c chunk c of the first vector then chunk c^1
# of the second: the kernels gather chunks 2k and 2k+1 in the two halves of
# one register and swap the halves for the other two products, which costs
# one instruction (VSHUFI64X2) where gathering both twice would cost two.
PAIRBLOCK = 640


def vperm2(a, b, want):
    """The index vector of a VPERMI2D that makes the dword labels want from
    the tables a (indices 0…15) and b (16…31)."""
    t = list(a) + list(b)
    return [t.index(w) for w in want]


# The steps of gemvnPairQ4K, on labels: the quants' dword k (elements
# 4(k%8)…, of sub-block k//8) is labelled k. Step 1 pairs sub-blocks 0…3 (two
# registers) and 4…7 for chunks 0…3 and 4…7; step 2 makes two chunks per
# register in the lanes' order.
regs = [list(range(16 * r, 16 * r + 16)) for r in range(4)]
step1 = []
for half in range(2):          # sub-blocks 0…3, then 4…7
    for cg in range(2):        # chunks 0…3, then 4…7
        want = [8 * (4 * half + sb) + 4 * cg + c for c in range(4) for sb in range(4)]
        step1.append((2 * half, 2 * half + 1, want))
t1 = [w for _, _, w in step1]
step2 = []
for k in range(4):             # chunks 2k, 2k+1
    cg = k // 2
    want = [8 * pairSB[i] + 2 * k + cc for cc in range(2) for i in range(8)]
    step2.append((cg, 2 + cg, want))
idx = []
for a, b, want in step1:
    idx += vperm2(regs[a], regs[b], want)
for a, b, want in step2:
    idx += vperm2(t1[a], t1[b], want)
data("zq4pPrep", [b for v in idx for b in (v, 0, 0, 0)])


def pairq4k():
    """gemvnPairQ4K: one Q8_K vector of nb blocks at x into its half of the
    pair blocks at dst (dst+32 and second = 1 for the second vector of a
    pair), PAIRBLOCK bytes apart: d8 per lane (d8/16 in lanes 4…7), d8·bsum
    per sub-block, and its 256 quants as the 8 chunks of 32 the pair kernels
    multiply (4 loads, 8 VPERMI2D), chunk c of the second vector in line
    c^1. The stores take the even chunks to R8 = 64·second past their line
    and the odd ones to R9 = 64 − R8."""
    e("// func gemvnPairQ4K(x *byte, nb int, dst *byte, second int)")
    e("TEXT ·gemvnPairQ4K(SB), NOSPLIT, $0-32")
    e("\tMOVQ x+0(FP), BX")
    e("\tMOVQ nb+8(FP), CX")
    e("\tMOVQ dst+16(FP), DI")
    e("\tMOVQ second+24(FP), R8")
    e("\tSHLQ $6, R8")
    e("\tMOVQ $64, R9")
    e("\tSUBQ R8, R9")
    e("\t// words of 1 (Y15), to add the bsums in pairs")
    e("\tVPCMPEQW Y15, Y15, Y15")
    e("\tVPABSW Y15, Y15")
    e("gemvnPairQ4K_block:")
    e("\tVBROADCASTSS (BX), Y4")
    e("\tVMULPS zq4pD8<>(SB), Y4, Y6")
    e("\tVMOVUPS Y6, (DI)")
    e("\tVPMADDWD 260(BX), Y15, Y5")
    e("\tVCVTDQ2PS Y5, Y5")
    e("\tVMULPS Y4, Y5, Y5")
    e("\tVMOVUPS Y5, 64(DI)")
    for r in range(4):
        e("\tVMOVDQU64 %d(BX), Z%d" % (4 + 64*r, r))
    e("\t// sub-blocks 0…3 (Z8, Z9) and 4…7 (Z10, Z11) for chunks 0…3 and 4…7")
    for s, (a, b, _) in enumerate(step1):
        e("\tVMOVDQU64 zq4pPrep<>+%d(SB), Z%d" % (64*s, 8 + s))
        e("\tVPERMI2D Z%d, Z%d, Z%d" % (b, a, 8 + s))
    e("\t// chunks 2k and 2k+1 in the lanes' order, each to its line")
    for k, (a, b, _) in enumerate(step2):
        e("\tVMOVDQU64 zq4pPrep<>+%d(SB), Z12" % (64*(4 + k)))
        e("\tVPERMI2D Z%d, Z%d, Z12" % (8 + b, 8 + a))
        e("\tVMOVDQU Y12, %d(DI)(R8*1)" % (128 + 64*2*k))
        e("\tVEXTRACTI64X4 $1, Z12, %d(DI)(R9*1)" % (128 + 64*2*k))
    e("\tADDQ $292, BX")
    e("\tADDQ $%d, DI" % PAIRBLOCK)
    e("\tDECQ CX")
    e("\tJNZ gemvnPairQ4K_block")
    e("\tVZEROUPPER")
    e("\tRET")
    e("")


def q4kp(C):
    """The pair kernel for C vectors (1…8), (C+1)/2 pairs; with C odd the last
    pair's second vector is a zero one, whose sums are not stored. Pair p's
    blocks are at BX + p·R8. Per pair: float sums in Zp (first vector in the
    lower half), integer sums in Z(16+p+P·a) (isumP), a < A."""
    name = "gemvnQ4Kx%dP" % C
    P = (C + 1) // 2
    # Two integer sums per pair, of the products with Z14 and with Z15: the
    # 8 VPDPBUSD of a pair's block in one chain would wait on each other's
    # latency (one sum measured 4 % slower with 8 vectors, four sums slower
    # with 2 and 4).
    A = 2
    isumP = lambda p, a: 16 + p + P*a
    pair = lambda p, off: ["%d(BX)", "%d(BX)(R8*1)", "%d(BX)(R8*2)", "%d(BX)(R9*1)"][p] % off
    e("// func %s(w *byte, stride int, x *byte, xStride int, nb int, out *float32, outStride int, rows int, add int)" % name)
    e("TEXT ·%s(SB), NOSPLIT, $0-72" % name)
    e("\tMOVQ w+0(FP), SI")
    e("\tMOVQ xStride+24(FP), R8")
    e("\tLEAQ (R8)(R8*2), R9")
    e("\tMOVQ out+40(FP), DI")
    e("\tMOVQ rows+56(FP), R11")
    e("\tVMOVDQU64 zq4pNib<>(SB), Z24")
    e("\tVMOVDQU64 zq4pDup<>(SB), Z25")
    e("\tVMOVDQU64 zq4pSc<>(SB), Z26")
    e("\tVMOVDQU64 zq4pMin<>(SB), Z27")
    e("%s_row:" % name)
    e("\tMOVQ SI, AX")
    e("\tMOVQ x+16(FP), BX")
    e("\tMOVQ nb+32(FP), CX")
    for p in range(4):
        e("\tVXORPS Z%d, Z%d, Z%d" % (p, p, p))
    e("%s_block:" % name)
    q4k_scales()
    e("\t// [d·sc | dmin·m] of the sub-blocks (Z8), then d·sc in the lanes'")
    e("\t// order (Z12) and dmin·m in the sub-blocks' (Z13), in both halves")
    e("\tVPINSRQ $1, R12, X8, X8")
    e("\tVPMOVZXBD X8, Z8")
    e("\tVCVTDQ2PS Z8, Z8")
    e("\tVMOVD (AX), X10")
    e("\tVCVTPH2PS X10, X10")
    e("\tVPERMPS Z10, Z25, Z11")
    e("\tVMULPS Z11, Z8, Z8")
    e("\tVPERMPS Z8, Z26, Z12")
    e("\tVPERMPS Z8, Z27, Z13")
    e("\t// the 128 bytes of nibbles (Z10, Z11)")
    e("\tVMOVDQU64 16(AX), Z10")
    e("\tVMOVDQU64 80(AX), Z11")
    for k in range(4):
        e("\t// chunks %d | %d (Z14), %d | %d (Z15): elements %d…%d of each sub-block" % (2*k, 2*k + 1, 2*k + 1, 2*k, 8*k, 8*k + 7))
        e("\tVMOVDQU64 zq4pGather<>+%d(SB), Z14" % (64*k))
        e("\tVPERMI2D Z11, Z10, Z14")
        e("\tVPANDD Z24, Z14, Z14")
        e("\tVSHUFI64X2 $0x4e, Z14, Z14, Z15")
        for h, r in enumerate(("Z14", "Z15")):
            for p in range(P):
                a = isumP(p, h)
                if k == 0:
                    e("\tVPXORD Z%d, Z%d, Z%d" % (a, a, a))
                e("\tVPDPBUSD %s, %s, Z%d" % (pair(p, 128 + 64*(2*k + h)), r, a))
    for p in range(P):
        e("\t// pair %d: += d8·d·sc·Σ q·x, −= dmin·m·d8·bsum" % p)
        e("\tVPADDD Z%d, Z%d, Z%d" % (isumP(p, 1), isumP(p, 0), isumP(p, 0)))
        e("\tVCVTDQ2PS Z%d, Z%d" % (16 + p, 16 + p))
        e("\tVMULPS Z12, Z%d, Z%d" % (16 + p, 16 + p))
        e("\tVFMADD231PS %s, Z%d, Z%d" % (pair(p, 0), 16 + p, p))
        e("\tVFNMADD231PS %s, Z13, Z%d" % (pair(p, 64), p))
    for off in range(0, 144, 64):
        e("\tPREFETCHT0 %d(AX)" % (PREFETCH + off))
    e("\tADDQ $144, AX")
    e("\tADDQ $%d, BX" % PAIRBLOCK)
    e("\tDECQ CX")
    e("\tJNZ %s_block" % name)
    e("\t// the sums of each 128-bit lane of Z0…Z3, one pair per float of Z5,")
    e("\t// then of each half: vectors 0, 2, 4, 6 in X5, 1, 3, 5, 7 in X6")
    e("\tVUNPCKLPD Z1, Z0, Z4")
    e("\tVUNPCKHPD Z1, Z0, Z5")
    e("\tVADDPS Z5, Z4, Z4")
    e("\tVUNPCKLPD Z3, Z2, Z6")
    e("\tVUNPCKHPD Z3, Z2, Z7")
    e("\tVADDPS Z7, Z6, Z6")
    e("\tVSHUFPS $0x88, Z6, Z4, Z5")
    e("\tVSHUFPS $0xdd, Z6, Z4, Z7")
    e("\tVADDPS Z7, Z5, Z5")
    e("\tVSHUFF32X4 $0xb1, Z5, Z5, Z6")
    e("\tVADDPS Z6, Z5, Z5")
    e("\tVEXTRACTF32X4 $2, Z5, X6")
    e("\t// vectors 0…3 (X4) and 4…7 (X5)")
    e("\tVUNPCKLPS X6, X5, X4")
    e("\tVUNPCKHPS X6, X5, X5")
    e("\t// the outputs: DX the bytes between vectors', R10 three times as many")
    dst = out_addrs8()
    e("\t// with add, the sums of the blocks before (a part of the row)")
    e("\tCMPQ add+64(FP), $0")
    e("\tJEQ %s_store" % name)
    for h in range((C + 3) // 4):
        for j in range(4*h, min(C, 4*h + 4)):
            if j % 4 == 0:
                e("\tVMOVSS %s, X6" % dst[j])
            else:
                e("\tVINSERTPS $0x%02x, %s, X6, X6" % (16 * (j % 4), dst[j]))
        e("\tVADDPS X6, X%d, X%d" % (4 + h, 4 + h))
    e("%s_store:" % name)
    for j in range(C):
        if j % 4 == 0:
            e("\tVMOVSS X%d, %s" % (4 + j // 4, dst[j]))
        else:
            e("\tVEXTRACTPS $%d, X%d, %s" % (j % 4, 4 + j // 4, dst[j]))
    e("\tADDQ $4, DI")
    e("\tADDQ stride+8(FP), SI")
    e("\tDECQ R11")
    e("\tJNZ %s_row" % name)
    e("\tVZEROUPPER")
    e("\tRET")
    e("")


pairq4k()
for C in range(1, 9):
    q4kp(C)

common.write(out)
