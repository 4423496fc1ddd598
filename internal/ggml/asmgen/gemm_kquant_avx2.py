# Generates gemm_kquant_avx2_amd64.s: the AVX2 K-quant Gemm kernels.
import common

out = common.header("gemm_kquant_avx2.py") + common.STORE
def e(s): out.append("\t" + s)

XR = ["R8", "R9"]
F = ["Y0", "Y1"]
I = ["Y2", "Y3"]
M = ["Y4", "Y5"]
P = ["Y6", "Y7"]
T = ["Y8", "Y9"]

def block(C, g16):
    cols = range(C)
    for c in cols:
        e(f"VPXOR {I[c]}, {I[c]}, {I[c]}")
        e(f"VPXOR {M[c]}, {M[c]}, {M[c]}")
    groups, per, unit = (16, 4, 2) if g16 else (8, 8, 4)
    for g in range(groups):
        so = 2048 + 32 * g
        e(f"VPSLLD $16, {so}(SI), Y11")
        e(f"VPBLENDW $0x55, {so}(SI), Y11, Y11")
        for h in range(per // unit):
            for k in range(unit):
                m = g * per + h * unit + k
                e(f"VMOVDQU {32*m}(SI), Y10")
                for c in cols:
                    e(f"VPBROADCASTD {4+4*m}({XR[c]}), {T[c]}")
                    if k == 0:
                        e(f"VPMADDUBSW {T[c]}, Y10, {P[c]}")
                    else:
                        e(f"VPMADDUBSW {T[c]}, Y10, {T[c]}")
                        e(f"VPADDW {T[c]}, {P[c]}, {P[c]}")
            for c in cols:
                e(f"VPMADDWD Y11, {P[c]}, {P[c]}")
                e(f"VPADDD {P[c]}, {I[c]}, {I[c]}")
    for p in range(8):
        e(f"VMOVDQU {2560+32*p}(SI), Y10")
        for c in cols:
            e(f"VPBROADCASTD {260+4*p}({XR[c]}), {T[c]}")
            e(f"VPMADDWD {T[c]}, Y10, {T[c]}")
            e(f"VPADDD {T[c]}, {M[c]}, {M[c]}")
    for c in cols:
        if g16:
            e(f"VPSLLD $5, {M[c]}, {M[c]}")
            e(f"VPSUBD {M[c]}, {I[c]}, {I[c]}")
            e(f"VCVTDQ2PS {I[c]}, {I[c]}")
            e(f"VBROADCASTSS ({XR[c]}), Y13")
            e(f"VMULPS 2816(SI), Y13, Y12")
            e(f"VFMADD231PS Y12, {I[c]}, {F[c]}")
        else:
            e(f"VCVTDQ2PS {I[c]}, {I[c]}")
            e(f"VCVTDQ2PS {M[c]}, {M[c]}")
            e(f"VBROADCASTSS ({XR[c]}), Y13")
            e(f"VMULPS 2816(SI), Y13, Y12")
            e(f"VFMADD231PS Y12, {I[c]}, {F[c]}")
            e(f"VMULPS 2848(SI), Y13, Y12")
            e(f"VFNMADD231PS Y12, {M[c]}, {F[c]}")
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
    out.append(f"{p}_pair:")
    e("CMPQ R12, $2")
    e(f"JLT {p}_single")
    e("LEAQ (R8)(BX*1), R9")
    e("MOVQ p+0(FP), SI")
    e("MOVQ nb+8(FP), CX")
    for f in F:
        e(f"VXORPS {f}, {f}, {f}")
    e("MOVQ R8, AX")
    out.append(f"{p}_pblock:")
    block(2, g16)
    e("DECQ CX")
    e(f"JNZ {p}_pblock")
    e("MOVQ AX, R8")
    e("STORE(Y0, DI)")
    e("LEAQ (DI)(DX*1), AX")
    e("STORE(Y1, AX)")
    e("LEAQ (R8)(BX*2), R8")
    e("LEAQ (DI)(DX*2), DI")
    e("SUBQ $2, R12")
    e(f"JMP {p}_pair")
    out.append(f"{p}_single:")
    e("TESTQ R12, R12")
    e(f"JZ {p}_done")
    e("MOVQ p+0(FP), SI")
    e("MOVQ nb+8(FP), CX")
    e("VXORPS Y0, Y0, Y0")
    out.append(f"{p}_sblock:")
    block(1, g16)
    e("DECQ CX")
    e(f"JNZ {p}_sblock")
    e("STORE(Y0, DI)")
    out.append(f"{p}_done:")
    e("VZEROUPPER")
    e("RET")

out.append("\n// Generated AVX2 forms of the K kernels, 2 columns at a time: VPMADDUBSW")
out.append("// products of 4 (Q4_K, Q5_K) or 2 (Q6_K) vectors are summed in int16, which")
out.append("// cannot overflow for quants below 32 or 64, then VPMADDWD by the group scale")
out.append("// pairs (S_g, S_g) yields the scaled int32 sums.")
kernel("gemmK32x8AVX2", False, "Q4_K and Q5_K, as gemmK32x8VNNI.")
kernel("gemmK16x8AVX2", True, "Q6_K, as gemmK16x8VNNI.")
common.write(out)
