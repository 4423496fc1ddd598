# Generates gemm_kquant_vnni8_amd64.s: the VNNI K-quant Gemm kernels.
import sys
import common

out = common.header("gemm_kquant_vnni8.py") + common.STORE
def e(s): out.append("\t" + s)

XR = ["R8", "R9", "R10", "R11"]
F = ["Y0", "Y1", "Y2", "Y3"]
AE = ["Y4", "Y5", "Y6", "Y7"]
AO = ["Y8", "Y9", "Y10", "Y11"]
I = ["Y16", "Y17", "Y18", "Y19"]
M = ["Y20", "Y21", "Y22", "Y23"]

def block(C, g16):
    cols = range(C)
    for c in cols:
        e(f"VPXORD {I[c]}, {I[c]}, {I[c]}")
        e(f"VPXORD {M[c]}, {M[c]}, {M[c]}")
    groups, per = (16, 4) if g16 else (8, 8)
    for g in range(groups):
        A = AE if g % 2 == 0 else AO
        for c in cols:
            e(f"VPXORD {A[c]}, {A[c]}, {A[c]}")
        for k in range(per):
            m = g * per + k
            e(f"VMOVDQU {32*m}(SI), Y12")
            for c in cols:
                e(f"VPDPBUSD.BCST {4+4*m}({XR[c]}), Y12, {A[c]}")
        for c in cols:
            e(f"VPMULLD {2048+32*g}(SI), {A[c]}, {A[c]}")
            e(f"VPADDD {A[c]}, {I[c]}, {I[c]}")
    for p in range(8):
        e(f"VMOVDQU {2560+32*p}(SI), Y12")
        for c in cols:
            e(f"VPDPWSSD.BCST {260+4*p}({XR[c]}), Y12, {M[c]}")
    for c in cols:
        if g16:
            e(f"VPSLLD $5, {M[c]}, {M[c]}")
            e(f"VPSUBD {M[c]}, {I[c]}, {I[c]}")
            e(f"VCVTDQ2PS {I[c]}, {I[c]}")
            e(f"VBROADCASTSS ({XR[c]}), Y13")
            e(f"VMULPS 2816(SI), Y13, Y14")
            e(f"VFMADD231PS Y14, {I[c]}, {F[c]}")
        else:
            e(f"VCVTDQ2PS {I[c]}, {I[c]}")
            e(f"VCVTDQ2PS {M[c]}, {M[c]}")
            e(f"VBROADCASTSS ({XR[c]}), Y13")
            e(f"VMULPS 2816(SI), Y13, Y14")
            e(f"VFMADD231PS Y14, {I[c]}, {F[c]}")
            e(f"VMULPS 2848(SI), Y13, Y14")
            e(f"VFNMADD231PS Y14, {M[c]}, {F[c]}")
    for c in cols:
        e(f"ADDQ $292, {XR[c]}")
    e("ADDQ $2880, SI")

def kernel(name, g16, what):
    p = name
    out.append("")
    out.append(f"// func {name}(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)")
    out.append(f"// {what}")
    out.append(f"TEXT ·{name}(SB), NOSPLIT, $0-64")
    e("MOVQ x+16(FP), R8")
    e("MOVQ xStride+24(FP), BX")
    e("MOVQ cols+32(FP), R12")
    e("MOVQ out+40(FP), DI")
    e("MOVQ outStride+48(FP), DX")
    e("SHLQ $2, DX")
    e("MOVQ acc+56(FP), R13")
    out.append(f"{p}_quad:")
    e("CMPQ R12, $4")
    e(f"JLT {p}_single")
    e("LEAQ (R8)(BX*1), R9")
    e("LEAQ (R8)(BX*2), R10")
    e("LEAQ (R9)(BX*2), R11")
    e("MOVQ p+0(FP), SI")
    e("MOVQ nb+8(FP), CX")
    for f in F:
        e(f"VXORPS {f}, {f}, {f}")
    e("MOVQ R8, AX")
    out.append(f"{p}_qblock:")
    block(4, g16)
    e("DECQ CX")
    e(f"JNZ {p}_qblock")
    e("MOVQ AX, R8")
    e("MOVQ DI, AX")
    for c in range(4):
        if c:
            e("ADDQ DX, AX")
        e(f"STORE({F[c]}, AX)")
    e("LEAQ (R8)(BX*4), R8")
    e("LEAQ (DI)(DX*4), DI")
    e("SUBQ $4, R12")
    e(f"JMP {p}_quad")
    out.append(f"{p}_single:")
    e("TESTQ R12, R12")
    e(f"JZ {p}_done")
    e("MOVQ p+0(FP), SI")
    e("MOVQ nb+8(FP), CX")
    e("MOVQ R8, AX")
    e("VXORPS Y0, Y0, Y0")
    out.append(f"{p}_sblock:")
    block(1, g16)
    e("DECQ CX")
    e(f"JNZ {p}_sblock")
    e("MOVQ AX, R8")
    e("STORE(Y0, DI)")
    e("ADDQ BX, R8")
    e("ADDQ DX, DI")
    e("DECQ R12")
    e(f"JMP {p}_single")
    out.append(f"{p}_done:")
    e("VZEROUPPER")
    e("RET")

out.append("\n// Generated kernels: per super-block and column, every group's VPDPBUSD sum")
out.append("// is scaled by its S_g (VPMULLD) into I, the bsum term goes to M")
out.append("// (VPDPWSSD), and F += d8·(dA·I − dB·M); two sets of group accumulators")
out.append("// alternate so that consecutive groups overlap.")
kernel("gemmK32x8VNNI", False, "Q4_K and Q5_K: 8 groups of 32 quants; F += d8·dA·I − d8·dB·M.")
kernel("gemmK16x8VNNI", True, "Q6_K: 16 groups of 16 quants; F += d8·dA·(I − 32·M), exact in int32.")
common.write(out)
