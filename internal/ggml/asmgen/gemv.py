# Generates gemv_amd64.s: the AVX2 Gemv kernels (the activation quantizers and
# f32ToF16AVX2, written by hand, are in quantize_amd64.s).
import common

out = common.header("gemv.py")
def e(s=""): out.append(s)

e("")
e("// AVX2 + FMA + F16C Gemv kernels. Arguments (ABI0), all kernels:")
e("//   w+0(FP) weight rows, stride+8(FP) bytes between rows, x+16(FP) activations,")
e("//   nb+24(FP) blocks (or 32-element chunks) per row, out+32(FP), rows+40(FP).")
e("// Registers: SI current row, DI current output, R11 end of output; AX/BX walk")
e("// the blocks of the row and of x, CX counts blocks. Integer products follow")
e("// ggml's AVX2 kernels (VPMADDUBSW of unsigned quants by signed activations,")
e("// VPMADDWD by the sub-block scales), so the integer sums are exact.")
e("")

def data32(name, bs):
    assert len(bs) % 8 == 0
    for i in range(0, len(bs), 8):
        v = 0
        for j in range(8):
            v |= bs[i+j] << (8*j)
        e("DATA %s<>+%d(SB)/8, $0x%016x" % (name, i, v))
    e("GLOBL %s<>(SB), RODATA|NOPTR, $%d" % (name, len(bs)))
    e("")

data32("nib0F", [0x0f]*32)
data32("bytes01", [0x01]*32)
data32("bytes02", [0x02]*32)
data32("bytes30", [0x30]*32)
data32("bytes08", [0x08]*32)
data32("ones16", [1, 0]*16)
# shufK4: for word k (0..7) of a register holding 8 words in both 128-bit lanes,
# a mask that broadcasts word k across each lane.
m = []
for k in range(8):
    m += [2*k, 2*k+1]*16
data32("shufK4", m)
# shufQ6: for pair p (0..7) of 16 int8 scales, 8 copies of byte 2p then 8 of 2p+1.
m = []
for p in range(8):
    m += [2*p]*8 + [2*p+1]*8
data32("shufQ6", m)

def data16(name, bs):
    assert len(bs) == 16
    for i in range(0, 16, 8):
        v = 0
        for j in range(8):
            v |= bs[i+j] << (8*j)
        e("DATA %s<>+%d(SB)/8, $0x%016x" % (name, i, v))
    e("GLOBL %s<>(SB), RODATA|NOPTR, $16" % name)
    e("")

# K-quant scale unpacking: gather the low and the high bits of the eight
# 6-bit scales (bytes 0-7) and mins (bytes 8-15) of a super-block.
data16("kscLo", [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11])
data16("kscHi", [0x80]*4 + [0, 1, 2, 3] + [0x80]*4 + [4, 5, 6, 7])
data16("kscMask", [63]*4 + [15]*4 + [63]*4 + [15]*4)

def prologue(name, extra=""):
    e("// func %s(w *byte, stride int, x *byte, nb int, out *float32, rows int)" % name)
    e("TEXT ·%s(SB), NOSPLIT, $0-48" % name)
    e("\tMOVQ w+0(FP), SI")
    e("\tMOVQ out+32(FP), DI")
    e("\tMOVQ rows+40(FP), R11")
    e("\tLEAQ (DI)(R11*4), R11")
    if extra: e(extra)

def row_start(lbl):
    e("%s_row:" % lbl)
    e("\tCMPQ DI, R11")
    e("\tJEQ %s_done" % lbl)
    e("\tMOVQ SI, AX")
    e("\tMOVQ x+16(FP), BX")
    e("\tMOVQ nb+24(FP), CX")

def hsum(y, tmp):
    # horizontal sum of the 8 floats of Y<y> into lane 0 of X<y>
    e("\tVEXTRACTF128 $1, Y%d, X%d" % (y, tmp))
    e("\tVADDPS X%d, X%d, X%d" % (tmp, y, y))
    e("\tVMOVHLPS X%d, X%d, X%d" % (y, y, tmp))
    e("\tVADDPS X%d, X%d, X%d" % (tmp, y, y))
    e("\tVMOVSHDUP X%d, X%d" % (y, tmp))
    e("\tVADDSS X%d, X%d, X%d" % (tmp, y, y))

def row_end(lbl):
    e("\tVMOVSS X0, (DI)")
    e("\tADDQ $4, DI")
    e("\tADDQ stride+8(FP), SI")
    e("\tJMP %s_row" % lbl)
    e("%s_done:" % lbl)
    e("\tVZEROUPPER")
    e("\tRET")
    e("")

# Software prefetch. A decode step reads every weight once, straight from
# memory, and one thread's loads alone do not keep enough of them in flight:
# the hardware prefetcher stops at each 4 KB page. So every block first asks
# for the weights PREFETCH bytes ahead of it (PREFETCHT0 of each cache line
# of a block that far on). Measured on one thread over a 256 MB Q4_K matrix,
# 2 to 8 KB ahead read 30-50 % faster than no prefetch (NTA was slower);
# reading past the end of a band or of the matrix is harmless (a prefetch
# never faults) and mostly fetches what the next band reads anyway.
PREFETCH = 4096

def prefetch(size):
    for off in range(0, size, 64):
        e("\tPREFETCHT0 %d(AX)" % (PREFETCH + off))

# ---------- Q4_K and Q5_K ----------
def kscales():
    e("\t// unpack the 6-bit scales and mins (get_scale_min_k4) in one vector:")
    e("\t// bytes 0-7 scales, 8-15 mins; low bits from bytes 0-3/8-11 (scales)")
    e("\t// and 4-7/8-11 (mins), high bits of 4-7 from bits 6-7 of 0-3/4-7")
    e("\tVMOVDQU 4(AX), X4")
    e("\tVPSHUFB kscLo<>(SB), X4, X2")
    e("\tVPSRLW $4, X2, X3")
    e("\tVPBLENDW $0xc0, X3, X2, X2")
    e("\tVPAND kscMask<>(SB), X2, X2")
    e("\tVPSHUFB kscHi<>(SB), X4, X3")
    e("\tVPSRLW $2, X3, X3")
    e("\tVPAND bytes30<>(SB), X3, X3")
    e("\tVPOR X3, X2, X2")
    e("\tVPSRLDQ $8, X2, X3")
    e("\tVPMOVZXBW X2, X2")
    e("\tVPMOVZXBW X3, X3")
    e("\tVINSERTI128 $1, X2, Y2, Y2")
    e("\t// [d·d8, dmin·d8]")
    e("\tVMOVD (AX), X6")
    e("\tVCVTPH2PS X6, X6")
    e("\tVBROADCASTSS (BX), X7")
    e("\tVMULPS X7, X6, X6")
    e("\tVBROADCASTSS X6, Y9")
    e("\tVMOVSHDUP X6, X8")
    e("\tVBROADCASTSS X8, X8")
    e("\t// mins · (pairs of bsums), accumulated in X1")
    e("\tVMOVDQU 260(BX), Y4")
    e("\tVEXTRACTI128 $1, Y4, X5")
    e("\tVPHADDW X5, X4, X4")
    e("\tVPMADDWD X3, X4, X4")
    e("\tVCVTDQ2PS X4, X4")
    e("\tVFMADD231PS X8, X4, X1")

def kchunk(c, qoff, q5):
    e("\tVMOVDQU %d(AX), Y10" % (qoff + 32*c))
    e("\tVPSRLW $4, Y10, Y11")
    e("\tVPAND Y15, Y10, Y10")
    e("\tVPAND Y15, Y11, Y11")
    if q5:
        e("\tVPAND bytes01<>(SB), Y14, Y12")
        e("\tVPSLLW $4, Y12, Y12")
        e("\tVPOR Y12, Y10, Y10")
        e("\tVPAND bytes02<>(SB), Y14, Y12")
        e("\tVPSLLW $3, Y12, Y12")
        e("\tVPOR Y12, Y11, Y11")
        if c < 3:
            e("\tVPSRLW $2, Y14, Y14")
    e("\tVPMADDUBSW %d(BX), Y10, Y10" % (4 + 64*c))
    e("\tVPMADDUBSW %d(BX), Y11, Y11" % (36 + 64*c))
    e("\tVPSHUFB shufK4<>+%d(SB), Y2, Y12" % (64*c))
    e("\tVPMADDWD Y12, Y10, Y10")
    e("\tVPSHUFB shufK4<>+%d(SB), Y2, Y12" % (64*c + 32))
    e("\tVPMADDWD Y12, Y11, Y11")
    if c == 0:
        e("\tVPADDD Y10, Y11, Y13")
    else:
        e("\tVPADDD Y10, Y11, Y11")
        e("\tVPADDD Y11, Y13, Y13")

def kquant(name, lbl, size, q5):
    prologue(name, "\tVMOVDQU nib0F<>(SB), Y15")
    row_start(lbl)
    e("\tVXORPS Y0, Y0, Y0")
    e("\tVXORPS X1, X1, X1")
    e("%s_block:" % lbl)
    prefetch(size)
    kscales()
    if q5:
        e("\tVMOVDQU 16(AX), Y14")
    for c in range(4):
        kchunk(c, 48 if q5 else 16, q5)
    e("\tVCVTDQ2PS Y13, Y13")
    e("\tVFMADD231PS Y9, Y13, Y0")
    e("\tADDQ $%d, AX" % size)
    e("\tADDQ $292, BX")
    e("\tDECQ CX")
    e("\tJNZ %s_block" % lbl)
    hsum(0, 2)
    e("\tVMOVHLPS X1, X1, X2")
    e("\tVADDPS X2, X1, X1")
    e("\tVMOVSHDUP X1, X2")
    e("\tVADDSS X2, X1, X1")
    e("\tVSUBSS X1, X0, X0")
    row_end(lbl)

kquant("gemvQ4KAVX2", "q4k", 144, False)
kquant("gemvQ5KAVX2", "q5k", 176, True)

# ---------- Q6_K ----------
prologue("gemvQ6KAVX2", "\tVMOVDQU nib0F<>(SB), Y15")
row_start("q6k")
e("\tVXORPS Y0, Y0, Y0")
e("q6k_block:")
prefetch(210)
e("\t// d·d8")
e("\tMOVWLZX 208(AX), DX")
e("\tVMOVD DX, X6")
e("\tVCVTPH2PS X6, X6")
e("\tVMULSS (BX), X6, X6")
e("\tVBROADCASTSS X6, Y9")
e("\t// the -32 offset: start from -32·Σ scale·bsum")
e("\tVMOVDQU 192(AX), X2")
e("\tVPMOVSXBW X2, Y3")
e("\tVPMADDWD 260(BX), Y3, Y13")
e("\tVPSLLD $5, Y13, Y13")
e("\tVPXOR Y12, Y12, Y12")
e("\tVPSUBD Y13, Y12, Y13")
for h in range(2):
    e("\tVMOVDQU %d(AX), Y10" % (64*h))
    e("\tVMOVDQU %d(AX), Y11" % (64*h + 32))
    e("\tVMOVDQU %d(AX), Y12" % (128 + 32*h))
    for k in range(4):
        src = "Y10" if k in (0, 2) else "Y11"
        if k < 2:
            e("\tVPAND Y15, %s, Y4" % src)
        else:
            e("\tVPSRLW $4, %s, Y4" % src)
            e("\tVPAND Y15, Y4, Y4")
        # high bits 2k, 2k+1 of qh moved to bits 4, 5
        if k == 0:
            e("\tVPSLLW $4, Y12, Y5")
            e("\tVPAND bytes30<>(SB), Y5, Y5")
        elif k == 1:
            e("\tVPSLLW $2, Y12, Y5")
            e("\tVPAND bytes30<>(SB), Y5, Y5")
        elif k == 2:
            e("\tVPAND bytes30<>(SB), Y12, Y5")
        else:
            e("\tVPSRLW $2, Y12, Y5")
            e("\tVPAND bytes30<>(SB), Y5, Y5")
        e("\tVPOR Y5, Y4, Y4")
        e("\tVPMADDUBSW %d(BX), Y4, Y4" % (4 + 128*h + 32*k))
        e("\tVPSHUFB shufQ6<>+%d(SB), X2, X5" % (16*(4*h + k)))
        e("\tVPMOVSXBW X5, Y5")
        e("\tVPMADDWD Y5, Y4, Y4")
        e("\tVPADDD Y4, Y13, Y13")
e("\tVCVTDQ2PS Y13, Y13")
e("\tVFMADD231PS Y9, Y13, Y0")
e("\tADDQ $210, AX")
e("\tADDQ $292, BX")
e("\tDECQ CX")
e("\tJNZ q6k_block")
hsum(0, 2)
row_end("q6k")

# ---------- Q8_0 and Q4_0 ----------
def q0(name, lbl, size, q4):
    prologue(name, "\tVMOVDQU nib0F<>(SB), Y15\n\tVMOVDQU ones16<>(SB), Y14")
    row_start(lbl)
    e("\tVXORPS Y0, Y0, Y0")
    e("%s_block:" % lbl)
    prefetch(size)
    e("\t// d·d8 from the two F16 scales")
    e("\tMOVWLZX (AX), DX")
    e("\tMOVWLZX (BX), R8")
    e("\tSHLL $16, R8")
    e("\tORL R8, DX")
    e("\tVMOVD DX, X6")
    e("\tVCVTPH2PS X6, X6")
    e("\tVMOVSHDUP X6, X7")
    e("\tVMULSS X7, X6, X6")
    e("\tVBROADCASTSS X6, Y6")
    if q4:
        e("\tVMOVDQU 2(AX), X10")
        e("\tVPSRLW $4, X10, X11")
        e("\tVINSERTI128 $1, X11, Y10, Y10")
        e("\tVPAND Y15, Y10, Y10")
        e("\tVPSUBB bytes08<>(SB), Y10, Y10")
    else:
        e("\tVMOVDQU 2(AX), Y10")
    e("\tVMOVDQU 2(BX), Y11")
    e("\t// signed × signed via |w| × (x·sign(w))")
    e("\tVPSIGNB Y10, Y10, Y12")
    e("\tVPSIGNB Y10, Y11, Y11")
    e("\tVPMADDUBSW Y11, Y12, Y12")
    e("\tVPMADDWD Y14, Y12, Y12")
    e("\tVCVTDQ2PS Y12, Y12")
    e("\tVFMADD231PS Y6, Y12, Y0")
    e("\tADDQ $%d, AX" % size)
    e("\tADDQ $34, BX")
    e("\tDECQ CX")
    e("\tJNZ %s_block" % lbl)
    hsum(0, 2)
    row_end(lbl)

q0("gemvQ8_0AVX2", "q80", 34, False)

# ---------- Q8_0, eight blocks at a time ----------
# The weights' eight F16 scales are gathered into one vector and converted
# and multiplied by the activation's (converted once per call, xs) together,
# instead of one scalar conversion per block; two accumulators alternate
# blocks. Blocks past the last multiple of 8 go one at a time as above.
e("// func gemvQ8_0x8AVX2(w *byte, stride int, x *byte, nb int, out *float32, rows int, xs *float32)")
e("// As gemvQ8_0AVX2, with xs[b] the activation's block scales as float32.")
e("TEXT ·gemvQ8_0x8AVX2(SB), NOSPLIT, $32-56")
e("\tMOVQ w+0(FP), SI")
e("\tMOVQ out+32(FP), DI")
e("\tMOVQ rows+40(FP), R11")
e("\tLEAQ (DI)(R11*4), R11")
e("\tVMOVDQU ones16<>(SB), Y14")
e("q808_row:")
e("\tCMPQ DI, R11")
e("\tJEQ q808_done")
e("\tMOVQ SI, AX")
e("\tMOVQ x+16(FP), BX")
e("\tMOVQ xs+48(FP), R12")
e("\tMOVQ nb+24(FP), CX")
e("\tSHRQ $3, CX")
e("\tVXORPS Y0, Y0, Y0")
e("\tVXORPS Y1, Y1, Y1")
e("\tTESTQ CX, CX")
e("\tJZ q808_tail")
e("q808_group:")
prefetch(272)
e("\tMOVWLZX (AX), DX")
e("\tVMOVD DX, X6")
for j in range(1, 8):
    e("\tMOVWLZX %d(AX), DX" % (34*j))
    e("\tVPINSRW $%d, DX, X6, X6" % j)
e("\tVCVTPH2PS X6, Y6")
e("\tVMULPS (R12), Y6, Y6")
e("\tVMOVUPS Y6, sc-32(SP)")
for j in range(8):
    e("\tVMOVDQU %d(AX), Y10" % (34*j + 2))
    e("\tVMOVDQU %d(BX), Y11" % (34*j + 2))
    e("\tVPSIGNB Y10, Y10, Y12")
    e("\tVPSIGNB Y10, Y11, Y11")
    e("\tVPMADDUBSW Y11, Y12, Y12")
    e("\tVPMADDWD Y14, Y12, Y12")
    e("\tVCVTDQ2PS Y12, Y12")
    e("\tVBROADCASTSS sc-%d(SP), Y13" % (32 - 4*j))
    e("\tVFMADD231PS Y13, Y12, Y%d" % (j % 2))
e("\tADDQ $272, AX")
e("\tADDQ $272, BX")
e("\tADDQ $32, R12")
e("\tDECQ CX")
e("\tJNZ q808_group")
e("q808_tail:")
e("\tMOVQ nb+24(FP), CX")
e("\tANDQ $7, CX")
e("\tJZ q808_sum")
e("q808_block:")
e("\tMOVWLZX (AX), DX")
e("\tVMOVD DX, X6")
e("\tVCVTPH2PS X6, X6")
e("\tVMULSS (R12), X6, X6")
e("\tVBROADCASTSS X6, Y6")
e("\tVMOVDQU 2(AX), Y10")
e("\tVMOVDQU 2(BX), Y11")
e("\tVPSIGNB Y10, Y10, Y12")
e("\tVPSIGNB Y10, Y11, Y11")
e("\tVPMADDUBSW Y11, Y12, Y12")
e("\tVPMADDWD Y14, Y12, Y12")
e("\tVCVTDQ2PS Y12, Y12")
e("\tVFMADD231PS Y6, Y12, Y0")
e("\tADDQ $34, AX")
e("\tADDQ $34, BX")
e("\tADDQ $4, R12")
e("\tDECQ CX")
e("\tJNZ q808_block")
e("q808_sum:")
e("\tVADDPS Y1, Y0, Y0")
hsum(0, 2)
row_end("q808")
q0("gemvQ4_0AVX2", "q40", 18, True)

# ---------- F16, F32: ggml_vec_dot_f16/f32 (4 × 8 lanes, FMA) ----------
def floats(name, lbl, load, step):
    prologue(name)
    row_start(lbl)
    for i in range(4):
        e("\tVXORPS Y%d, Y%d, Y%d" % (i, i, i))
    e("%s_loop:" % lbl)
    for i in range(4):
        e("\t%s %d(AX), Y%d" % (load, step*i, 4+2*i))
        e("\t%s %d(BX), Y%d" % (load, step*i, 5+2*i))
        e("\tVFMADD231PS Y%d, Y%d, Y%d" % (5+2*i, 4+2*i, i))
    e("\tADDQ $%d, AX" % (4*step))
    e("\tADDQ $%d, BX" % (4*step))
    e("\tDECQ CX")
    e("\tJNZ %s_loop" % lbl)
    e("\t// GGML_F32x8_REDUCE: (0+2) + (1+3), then lo+hi and two horizontal adds")
    e("\tVADDPS Y2, Y0, Y0")
    e("\tVADDPS Y3, Y1, Y1")
    e("\tVADDPS Y1, Y0, Y0")
    e("\tVEXTRACTF128 $1, Y0, X1")
    e("\tVADDPS X1, X0, X0")
    e("\tVHADDPS X0, X0, X0")
    e("\tVHADDPS X0, X0, X0")
    row_end(lbl)

floats("gemvF16AVX2", "f16", "VCVTPH2PS", 16)
floats("gemvF32AVX2", "f32", "VMOVUPS", 32)

# ---------- BF16: ggml_vec_dot_bf16 AVX2 path (mul then add) ----------
prologue("gemvBF16AVX2")
row_start("bf16")
for i in range(4):
    e("\tVXORPS Y%d, Y%d, Y%d" % (i, i, i))
e("bf16_loop:")
for i in range(4):
    e("\tVPMOVZXWD %d(AX), Y4" % (16*i))
    e("\tVPSLLD $16, Y4, Y4")
    e("\tVPMOVZXWD %d(BX), Y5" % (16*i))
    e("\tVPSLLD $16, Y5, Y5")
    e("\tVMULPS Y5, Y4, Y4")
    e("\tVADDPS Y4, Y%d, Y%d" % (i, i))
e("\tADDQ $64, AX")
e("\tADDQ $64, BX")
e("\tDECQ CX")
e("\tJNZ bf16_loop")
e("\tVADDPS Y2, Y0, Y0")
e("\tVADDPS Y3, Y1, Y1")
e("\tVADDPS Y1, Y0, Y0")
hsum(0, 1)
row_end("bf16")


# ---------- candidate sums of the K-quant scale searches (fit.go) ----------
e("DATA half<>+0(SB)/4, $0x3f000000")
e("GLOBL half<>(SB), RODATA|NOPTR, $4")
e("")
e("// func affineSumsAVX2(d *fitData, iscales *float32, nc int, nmax int32, out *float32)")
e("// For each of the nc inverse scales: l = min(nmax, trunc(iscale·x + 0.5)) and")
e("// out[3k:3k+3] = Σw·l, Σw·l², Σwx·l, in 8 lanes then a horizontal sum. The Go")
e("// twin affineSumsGo performs the same float32 operations in the same order.")
e("TEXT ·affineSumsAVX2(SB), NOSPLIT, $0-40")
e("\tMOVQ d+0(FP), AX")
e("\tMOVQ iscales+8(FP), BX")
e("\tMOVQ nc+16(FP), CX")
e("\tMOVQ out+32(FP), DI")
e("\tMOVL nmax+24(FP), DX")
e("\tVMOVD DX, X15")
e("\tVPBROADCASTD X15, Y15")
e("\tVBROADCASTSS half<>(SB), Y14")
e("aff_loop:")
e("\tVBROADCASTSS (BX), Y12")
for r in range(3):
    e("\tVXORPS Y%d, Y%d, Y%d" % (r, r, r))
for j in range(4):
    e("\tVMULPS %d(AX), Y12, Y3" % (32*j))
    e("\tVADDPS Y14, Y3, Y3")
    e("\tVCVTTPS2DQ Y3, Y3")
    e("\tVPMINSD Y15, Y3, Y3")
    e("\tVCVTDQ2PS Y3, Y3")
    e("\tVMULPS %d(AX), Y3, Y4" % (128 + 32*j))
    e("\tVADDPS Y4, Y0, Y0")
    e("\tVMULPS Y3, Y4, Y5")
    e("\tVADDPS Y5, Y1, Y1")
    e("\tVMULPS %d(AX), Y3, Y5" % (256 + 32*j))
    e("\tVADDPS Y5, Y2, Y2")
for r in range(3):
    hsum(r, 5)
    e("\tVMOVSS X%d, %d(DI)" % (r, 4*r))
e("\tADDQ $4, BX")
e("\tADDQ $12, DI")
e("\tDECQ CX")
e("\tJNZ aff_loop")
e("\tVZEROUPPER")
e("\tRET")
e("")
e("// func symSumsAVX2(d *fitData, iscales *float32, nc int, lo, hi int32, out *float32)")
e("// For each of the nc inverse scales: l = clamp(round(iscale·x), lo, hi) over the")
e("// first 16 values and out[2k:2k+2] = Σwx·l, Σ(w·l)·l, as symSumsGo.")
e("TEXT ·symSumsAVX2(SB), NOSPLIT, $0-40")
e("\tMOVQ d+0(FP), AX")
e("\tMOVQ iscales+8(FP), BX")
e("\tMOVQ nc+16(FP), CX")
e("\tMOVQ out+32(FP), DI")
e("\tMOVL lo+24(FP), DX")
e("\tVMOVD DX, X14")
e("\tVPBROADCASTD X14, Y14")
e("\tMOVL hi+28(FP), DX")
e("\tVMOVD DX, X15")
e("\tVPBROADCASTD X15, Y15")
e("sym_loop:")
e("\tVBROADCASTSS (BX), Y12")
e("\tVXORPS Y0, Y0, Y0")
e("\tVXORPS Y1, Y1, Y1")
for j in range(2):
    e("\tVMULPS %d(AX), Y12, Y3" % (32*j))
    e("\tVCVTPS2DQ Y3, Y3")
    e("\tVPMAXSD Y14, Y3, Y3")
    e("\tVPMINSD Y15, Y3, Y3")
    e("\tVCVTDQ2PS Y3, Y3")
    e("\tVMULPS %d(AX), Y3, Y5" % (256 + 32*j))
    e("\tVADDPS Y5, Y0, Y0")
    e("\tVMULPS %d(AX), Y3, Y5" % (128 + 32*j))
    e("\tVMULPS Y3, Y5, Y5")
    e("\tVADDPS Y5, Y1, Y1")
for r in range(2):
    hsum(r, 5)
    e("\tVMOVSS X%d, %d(DI)" % (r, 4*r))
e("\tADDQ $4, BX")
e("\tADDQ $8, DI")
e("\tDECQ CX")
e("\tJNZ sym_loop")
e("\tVZEROUPPER")
e("\tRET")

common.write(out)
