# Generates gemm_q8_vnni16_amd64.s: gemmQ8x16VNNI, two 8-row groups (records
# interleaved, 640 bytes per block) by 4 columns.
import common

out = common.header("gemm_q8_vnni16.py") + common.STORE + common.data32("gbytes80", b"\x80")
def e(s): out.append("\t" + s)
XR = ["R8", "R9", "R10", "R11"]
F = [["Y0", "Y1", "Y2", "Y3"], ["Y4", "Y5", "Y6", "Y7"]]          # [group][col]
A = [[["Y16", "Y17", "Y18", "Y19"], ["Y20", "Y21", "Y22", "Y23"]],  # [parity][group][col]
     [["Y24", "Y25", "Y26", "Y27"], ["Y28", "Y29", "Y30", "Y31"]]]

def block(C):
    for p in range(2):
        for g in range(2):
            for c in range(C):
                e(f"VPXORD {A[p][g][c]}, {A[p][g][c]}, {A[p][g][c]}")
    for k in range(8):
        p = k % 2
        e(f"VMOVDQU {32*k}(SI), Y8")
        e(f"VMOVDQU {320+32*k}(SI), Y9")
        for c in range(C):
            t = "Y10" if c % 2 == 0 else "Y11"
            e(f"VPXORD.BCST {2+4*k}({XR[c]}), Y15, {t}")
            e(f"VPDPBUSD Y8, {t}, {A[p][0][c]}")
            e(f"VPDPBUSD Y9, {t}, {A[p][1][c]}")
    for c in range(C):
        e(f"VPBROADCASTW ({XR[c]}), X12")
        e("VCVTPH2PS X12, Y12")
        for g in range(2):
            a = A[0][g][c]
            e(f"VPADDD {A[1][g][c]}, {a}, {a}")
            e(f"VPSUBD {256+320*g}(SI), {a}, {a}")
            e(f"VCVTDQ2PS {a}, {a}")
            e(f"VMULPS {288+320*g}(SI), Y12, Y13")
            e(f"VFMADD231PS Y13, {a}, {F[g][c]}")
    for c in range(C):
        e(f"ADDQ $34, {XR[c]}")
    e("ADDQ $640, SI")

name = "gemmQ8x16VNNI"
lp = "q8w"
out.append("")
out.append(f"// func {name}(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)")
out.append("// gemmQ8x8VNNI for 16 rows (generated): two 8-row groups whose records are")
out.append("// interleaved (640 bytes per block) share each flipped activation broadcast,")
out.append("// halving the loads and sign flips per VPDPBUSD. Columns 4 at a time.")
out.append(f"TEXT ·{name}(SB), NOSPLIT, $0-64")
for l in ["MOVQ x+16(FP), R8", "MOVQ xStride+24(FP), BX", "MOVQ cols+32(FP), R12", "MOVQ out+40(FP), DI",
          "MOVQ outStride+48(FP), DX", "SHLQ $2, DX", "MOVQ acc+56(FP), R13", "VMOVDQU gbytes80<>(SB), Y15"]:
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
block(4)
e("DECQ CX"); e(f"JNZ {lp}_qblock")
e("MOVQ AX, R8"); e("MOVQ DI, AX")
for c in range(4):
    if c:
        e("ADDQ DX, AX")
    e(f"STORE({F[0][c]}, AX)")
    e("ADDQ $32, AX")
    e(f"STORE({F[1][c]}, AX)")
    e("SUBQ $32, AX")
e("LEAQ (R8)(BX*4), R8"); e("LEAQ (DI)(DX*4), DI"); e("SUBQ $4, R12"); e(f"JMP {lp}_quad")
out.append(f"{lp}_single:")
e("TESTQ R12, R12"); e(f"JZ {lp}_done")
e("MOVQ p+0(FP), SI"); e("MOVQ nb+8(FP), CX"); e("MOVQ R8, AX")
e("VXORPS Y0, Y0, Y0"); e("VXORPS Y4, Y4, Y4")
out.append(f"{lp}_sblock:")
block(1)
e("DECQ CX"); e(f"JNZ {lp}_sblock")
e("MOVQ AX, R8"); e("STORE(Y0, DI)"); e("ADDQ $32, DI"); e("STORE(Y4, DI)"); e("SUBQ $32, DI")
e("ADDQ BX, R8"); e("ADDQ DX, DI"); e("DECQ R12"); e(f"JMP {lp}_single")
out.append(f"{lp}_done:")
e("VZEROUPPER"); e("RET")
common.write(out)
