# Generates gemm_q8_avx2_amd64.s: the AVX2 Q8_0/Q4_0 Gemm kernel.
import common

out = common.header("gemm_q8_avx2.py") + common.STORE + common.data32("gwords01", b"\x01\x00")
def e(s): out.append("\t" + s)
XR = ["R8", "R9", "R10", "R11"]
F = ["Y0", "Y1", "Y2", "Y3"]
A = ["Y4", "Y5", "Y6", "Y7"]

def block(C):
    for c in range(C):
        e(f"VPXOR {A[c]}, {A[c]}, {A[c]}")
    for k in range(8):
        e(f"VMOVDQU {32*k}(SI), Y8")
        e("VPABSB Y8, Y9")
        for c in range(C):
            t = "Y10" if c % 2 == 0 else "Y11"
            e(f"VPBROADCASTD {2+4*k}({XR[c]}), {t}")
            e(f"VPSIGNB Y8, {t}, {t}")
            e(f"VPMADDUBSW {t}, Y9, {t}")
            e(f"VPMADDWD Y15, {t}, {t}")
            e(f"VPADDD {t}, {A[c]}, {A[c]}")
    for c in range(C):
        e(f"VCVTDQ2PS {A[c]}, {A[c]}")
        e(f"VPBROADCASTW ({XR[c]}), X12")
        e("VCVTPH2PS X12, Y12")
        e("VMULPS 288(SI), Y12, Y12")
        e(f"VFMADD231PS Y12, {A[c]}, {F[c]}")
    for c in range(C):
        e(f"ADDQ $34, {XR[c]}")
    e("ADDQ $320, SI")

name = "gemmQ8x8AVX2"
p = "q8a"
out.append("")
out.append(f"// func {name}(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)")
out.append("// gemmQ8x8VNNI for AVX2 (generated, 4 columns at a time): the signed")
out.append("// weights meet the activations as |w| × (x·sign(w)) through VPMADDUBSW and")
out.append("// VPMADDWD, as ggml's AVX2 Q8_0 dot product, so no 128·Σw correction.")
out.append(f"TEXT ·{name}(SB), NOSPLIT, $0-64")
for l in ["MOVQ x+16(FP), R8", "MOVQ xStride+24(FP), BX", "MOVQ cols+32(FP), R12", "MOVQ out+40(FP), DI",
          "MOVQ outStride+48(FP), DX", "SHLQ $2, DX", "MOVQ acc+56(FP), R13", "VMOVDQU gwords01<>(SB), Y15"]:
    e(l)
out.append(f"{p}_quad:")
e("CMPQ R12, $4"); e(f"JLT {p}_single")
e("LEAQ (R8)(BX*1), R9"); e("LEAQ (R8)(BX*2), R10"); e("LEAQ (R9)(BX*2), R11")
e("MOVQ p+0(FP), SI"); e("MOVQ nb+8(FP), CX")
for f in F:
    e(f"VXORPS {f}, {f}, {f}")
e("MOVQ R8, AX")
out.append(f"{p}_qblock:")
block(4)
e("DECQ CX"); e(f"JNZ {p}_qblock")
e("MOVQ AX, R8"); e("MOVQ DI, AX")
for c in range(4):
    if c:
        e("ADDQ DX, AX")
    e(f"STORE({F[c]}, AX)")
e("LEAQ (R8)(BX*4), R8"); e("LEAQ (DI)(DX*4), DI"); e("SUBQ $4, R12"); e(f"JMP {p}_quad")
out.append(f"{p}_single:")
e("TESTQ R12, R12"); e(f"JZ {p}_done")
e("MOVQ p+0(FP), SI"); e("MOVQ nb+8(FP), CX"); e("MOVQ R8, AX"); e("VXORPS Y0, Y0, Y0")
out.append(f"{p}_sblock:")
block(1)
e("DECQ CX"); e(f"JNZ {p}_sblock")
e("MOVQ AX, R8"); e("STORE(Y0, DI)"); e("ADDQ BX, R8"); e("ADDQ DX, DI"); e("DECQ R12"); e(f"JMP {p}_single")
out.append(f"{p}_done:")
e("VZEROUPPER"); e("RET")
common.write(out)
