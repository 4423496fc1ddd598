# Generates gemm_kquant_vnni16_amd64.s: gemmK32x16VNNI and gemmK16x16VNNI, two
# 8-row groups (records interleaved, 5760 bytes per super-block) by 4 columns.
import common

out = common.header("gemm_kquant_vnni16.py") + common.STORE
def e(s): out.append("\t" + s)
XR = ["R8", "R9", "R10", "R11"]
F = [["Y0", "Y1", "Y2", "Y3"], ["Y4", "Y5", "Y6", "Y7"]]
A = [["Y16", "Y17", "Y18", "Y19"], ["Y20", "Y21", "Y22", "Y23"]]
I = [["Y24", "Y25", "Y26", "Y27"], ["Y28", "Y29", "Y30", "Y31"]]
XT = ["Y10", "Y11"]
R = 2880

def block(C, g16):
    for g in range(2):
        for c in range(C):
            e(f"VPXORD {I[g][c]}, {I[g][c]}, {I[g][c]}")
    groups, per = (16, 4) if g16 else (8, 8)
    for j in range(groups):
        for g in range(2):
            for c in range(C):
                e(f"VPXORD {A[g][c]}, {A[g][c]}, {A[g][c]}")
        for k in range(per):
            m = j * per + k
            e(f"VMOVDQU {32*m}(SI), Y8")
            e(f"VMOVDQU {R+32*m}(SI), Y9")
            for c in range(C):
                t = XT[c % 2]
                e(f"VPBROADCASTD {4+4*m}({XR[c]}), {t}")
                e(f"VPDPBUSD {t}, Y8, {A[0][c]}")
                e(f"VPDPBUSD {t}, Y9, {A[1][c]}")
        for g in range(2):
            for c in range(C):
                e(f"VPMULLD {2048+32*j+R*g}(SI), {A[g][c]}, {A[g][c]}")
                e(f"VPADDD {A[g][c]}, {I[g][c]}, {I[g][c]}")
    # bsum terms into Y12 (group 0) and Y14 (group 1), then the floats
    for c in range(C):
        e("VPXORD Y12, Y12, Y12")
        e("VPXORD Y14, Y14, Y14")
        for p in range(8):
            e(f"VPBROADCASTD {260+4*p}({XR[c]}), Y13")
            e(f"VPDPWSSD {2560+32*p}(SI), Y13, Y12")
            e(f"VPDPWSSD {R+2560+32*p}(SI), Y13, Y14")
        e(f"VBROADCASTSS ({XR[c]}), Y13")
        for g, M in ((0, "Y12"), (1, "Y14")):
            i = I[g][c]
            if g16:
                e(f"VPSLLD $5, {M}, {M}")
                e(f"VPSUBD {M}, {i}, {i}")
                e(f"VCVTDQ2PS {i}, {i}")
                e(f"VMULPS {2816+R*g}(SI), Y13, Y15")
                e(f"VFMADD231PS Y15, {i}, {F[g][c]}")
            else:
                e(f"VCVTDQ2PS {i}, {i}")
                e(f"VCVTDQ2PS {M}, {M}")
                e(f"VMULPS {2816+R*g}(SI), Y13, Y15")
                e(f"VFMADD231PS Y15, {i}, {F[g][c]}")
                e(f"VMULPS {2848+R*g}(SI), Y13, Y15")
                e(f"VFNMADD231PS Y15, {M}, {F[g][c]}")
    for c in range(C):
        e(f"ADDQ $292, {XR[c]}")
    e(f"ADDQ ${2*R}, SI")

def kernel(name, g16, lp, what):
    out.append("")
    out.append(f"// func {name}(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)")
    out.append(f"// {what}")
    out.append(f"TEXT ·{name}(SB), NOSPLIT, $0-64")
    for l in ["MOVQ x+16(FP), R8", "MOVQ xStride+24(FP), BX", "MOVQ cols+32(FP), R12", "MOVQ out+40(FP), DI",
              "MOVQ outStride+48(FP), DX", "SHLQ $2, DX", "MOVQ acc+56(FP), R13"]:
        e(l)
    out.append(f"{lp}_quad:")
    e("CMPQ R12, $4"); e(f"JLT {lp}_single")
    e("LEAQ (R8)(BX*1), R9"); e("LEAQ (R8)(BX*2), R10"); e("LEAQ (R9)(BX*2), R11")
    e("MOVQ p+0(FP), SI"); e("MOVQ nb+8(FP), CX")
    for g in range(2):
        for f in F[g]:
            e(f"VXORPS {f}, {f}, {f}")
    e("MOVQ R8, AX")
    out.append(f"{lp}_qblock:")
    block(4, g16)
    e("DECQ CX"); e(f"JNZ {lp}_qblock")
    e("MOVQ AX, R8"); e("MOVQ DI, AX")
    for c in range(4):
        if c:
            e("ADDQ DX, AX")
        e(f"STORE({F[0][c]}, AX)"); e("ADDQ $32, AX"); e(f"STORE({F[1][c]}, AX)"); e("SUBQ $32, AX")
    e("LEAQ (R8)(BX*4), R8"); e("LEAQ (DI)(DX*4), DI"); e("SUBQ $4, R12"); e(f"JMP {lp}_quad")
    out.append(f"{lp}_single:")
    e("TESTQ R12, R12"); e(f"JZ {lp}_done")
    e("MOVQ p+0(FP), SI"); e("MOVQ nb+8(FP), CX"); e("MOVQ R8, AX")
    e("VXORPS Y0, Y0, Y0"); e("VXORPS Y4, Y4, Y4")
    out.append(f"{lp}_sblock:")
    block(1, g16)
    e("DECQ CX"); e(f"JNZ {lp}_sblock")
    e("MOVQ AX, R8"); e("STORE(Y0, DI)"); e("ADDQ $32, DI"); e("STORE(Y4, DI)"); e("SUBQ $32, DI")
    e("ADDQ BX, R8"); e("ADDQ DX, DI"); e("DECQ R12"); e(f"JMP {lp}_single")
    out.append(f"{lp}_done:")
    e("VZEROUPPER"); e("RET")

out.append("\n// Generated 16-row forms of the VNNI K kernels: two 8-row groups whose")
out.append("// records are interleaved (5760 bytes per super-block) share each activation")
out.append("// broadcast; one accumulator per group and column (8 chains per group of")
out.append("// quants), the bsum terms folded in at the end of each super-block.")
kernel("gemmK32x16VNNI", False, "k32w", "Q4_K and Q5_K over 16 rows.")
kernel("gemmK16x16VNNI", True, "k16w", "Q6_K over 16 rows.")
common.write(out)
