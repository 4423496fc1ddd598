//go:build amd64

#include "textflag.h"

// Gemm kernels for 8 weight rows at a time. The weights are first repacked
// (repack* below) so that each 32-byte vector holds 4 consecutive quants of
// each of the 8 rows ("row-interleaved"): lane i of a dot-product vector then
// belongs to row i, and one VPDPBUSD with 4 bytes of one activation vector
// broadcast to all lanes advances 8 row × column products at once. The float
// work (block scales) is then done once per 8 products instead of once per
// product. See gemm_amd64.go for the buffer layouts.

DATA gnib0F<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA gnib0F<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA gnib0F<>+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA gnib0F<>+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL gnib0F<>(SB), RODATA|NOPTR, $32

DATA gbytes08<>+0(SB)/8, $0x0808080808080808
DATA gbytes08<>+8(SB)/8, $0x0808080808080808
DATA gbytes08<>+16(SB)/8, $0x0808080808080808
DATA gbytes08<>+24(SB)/8, $0x0808080808080808
GLOBL gbytes08<>(SB), RODATA|NOPTR, $32

DATA gbytes01<>+0(SB)/8, $0x0101010101010101
DATA gbytes01<>+8(SB)/8, $0x0101010101010101
DATA gbytes01<>+16(SB)/8, $0x0101010101010101
DATA gbytes01<>+24(SB)/8, $0x0101010101010101
GLOBL gbytes01<>(SB), RODATA|NOPTR, $32

DATA gbytes80<>+0(SB)/8, $0x8080808080808080
DATA gbytes80<>+8(SB)/8, $0x8080808080808080
DATA gbytes80<>+16(SB)/8, $0x8080808080808080
DATA gbytes80<>+24(SB)/8, $0x8080808080808080
GLOBL gbytes80<>(SB), RODATA|NOPTR, $32

// TRANSPOSE8 takes rows Y0…Y7 (8 dwords each) and leaves their dword
// transpose in Y8…Y15: Y(8+k) holds dword k of rows 0…7. Clobbers Y0…Y7.
#define TRANSPOSE8 \
	VPUNPCKLDQ Y1, Y0, Y8 \
	VPUNPCKHDQ Y1, Y0, Y9 \
	VPUNPCKLDQ Y3, Y2, Y10 \
	VPUNPCKHDQ Y3, Y2, Y11 \
	VPUNPCKLDQ Y5, Y4, Y12 \
	VPUNPCKHDQ Y5, Y4, Y13 \
	VPUNPCKLDQ Y7, Y6, Y14 \
	VPUNPCKHDQ Y7, Y6, Y15 \
	VPUNPCKLQDQ Y10, Y8, Y0 \
	VPUNPCKHQDQ Y10, Y8, Y1 \
	VPUNPCKLQDQ Y11, Y9, Y2 \
	VPUNPCKHQDQ Y11, Y9, Y3 \
	VPUNPCKLQDQ Y14, Y12, Y4 \
	VPUNPCKHQDQ Y14, Y12, Y5 \
	VPUNPCKLQDQ Y15, Y13, Y6 \
	VPUNPCKHQDQ Y15, Y13, Y7 \
	VPERM2I128 $0x20, Y4, Y0, Y8 \
	VPERM2I128 $0x20, Y5, Y1, Y9 \
	VPERM2I128 $0x20, Y6, Y2, Y10 \
	VPERM2I128 $0x20, Y7, Y3, Y11 \
	VPERM2I128 $0x31, Y4, Y0, Y12 \
	VPERM2I128 $0x31, Y5, Y1, Y13 \
	VPERM2I128 $0x31, Y6, Y2, Y14 \
	VPERM2I128 $0x31, Y7, Y3, Y15

// ROWPTRS loads the 8 row pointers AX, BX, CX, DX, SI, R8, R9, R10 from
// w+0(FP) and stride+8(FP).
#define ROWPTRS \
	MOVQ w+0(FP), AX \
	MOVQ stride+8(FP), R11 \
	LEAQ (AX)(R11*1), BX \
	LEAQ (AX)(R11*2), CX \
	LEAQ (BX)(R11*2), DX \
	LEAQ (AX)(R11*4), SI \
	LEAQ (BX)(R11*4), R8 \
	LEAQ (CX)(R11*4), R9 \
	LEAQ (DX)(R11*4), R10

// STOREQ8 stores the transposed block Y8…Y15 at DI, then 128·(row sums) at
// 256(DI) (Y16 holds bytes of 1) and the 8 F16 scales at 0(row) as float32 at
// 288(DI).
#define STOREQ8 \
	VMOVDQU Y8, 0(DI) \
	VMOVDQU Y9, 32(DI) \
	VMOVDQU Y10, 64(DI) \
	VMOVDQU Y11, 96(DI) \
	VMOVDQU Y12, 128(DI) \
	VMOVDQU Y13, 160(DI) \
	VMOVDQU Y14, 192(DI) \
	VMOVDQU Y15, 224(DI) \
	VPXORD Y17, Y17, Y17 \
	VPDPBUSD Y8, Y16, Y17 \
	VPDPBUSD Y9, Y16, Y17 \
	VPDPBUSD Y10, Y16, Y17 \
	VPDPBUSD Y11, Y16, Y17 \
	VPDPBUSD Y12, Y16, Y17 \
	VPDPBUSD Y13, Y16, Y17 \
	VPDPBUSD Y14, Y16, Y17 \
	VPDPBUSD Y15, Y16, Y17 \
	VPSLLD $7, Y17, Y17 \
	VMOVDQU32 Y17, 256(DI) \
	MOVWLZX (AX), R12 \
	VMOVD R12, X0 \
	VPINSRW $1, (BX), X0, X0 \
	VPINSRW $2, (CX), X0, X0 \
	VPINSRW $3, (DX), X0, X0 \
	VPINSRW $4, (SI), X0, X0 \
	VPINSRW $5, (R8), X0, X0 \
	VPINSRW $6, (R9), X0, X0 \
	VPINSRW $7, (R10), X0, X0 \
	VCVTPH2PS X0, Y0 \
	VMOVUPS Y0, 288(DI)

#define ADVANCE(n) \
	ADDQ $n, AX \
	ADDQ $n, BX \
	ADDQ $n, CX \
	ADDQ $n, DX \
	ADDQ $n, SI \
	ADDQ $n, R8 \
	ADDQ $n, R9 \
	ADDQ $n, R10 \
	ADDQ $320, DI

// func repackQ8_0x8(w *byte, stride int, nb int, dst *byte)
// Repacks nb Q8_0 blocks of 8 rows into 320-byte records: 8 interleaved
// 32-byte vectors of quants, 8 int32 128·Σq, 8 float32 scales.
TEXT ·repackQ8_0x8(SB), NOSPLIT, $0-32
	ROWPTRS
	MOVQ nb+16(FP), R13
	MOVQ dst+24(FP), DI
	VMOVDQU32 gbytes01<>(SB), Y16
rq8_loop:
	VMOVDQU 2(AX), Y0
	VMOVDQU 2(BX), Y1
	VMOVDQU 2(CX), Y2
	VMOVDQU 2(DX), Y3
	VMOVDQU 2(SI), Y4
	VMOVDQU 2(R8), Y5
	VMOVDQU 2(R9), Y6
	VMOVDQU 2(R10), Y7
	TRANSPOSE8
	STOREQ8
	ADVANCE(34)
	DECQ R13
	JNZ rq8_loop
	VZEROUPPER
	RET

// LOADQ4_0(reg, ptr): the 32 quants of a Q4_0 block at ptr as signed bytes
// q−8, in element order (low nibbles, then high nibbles). Clobbers X15.
#define LOADQ4_0(ptr, Xr, Yr) \
	VMOVDQU 2(ptr), Xr \
	VPSRLW $4, Xr, X15 \
	VINSERTI128 $1, X15, Yr, Yr \
	VPAND gnib0F<>(SB), Yr, Yr \
	VPSUBB gbytes08<>(SB), Yr, Yr

// func repackQ4_0x8(w *byte, stride int, nb int, dst *byte)
// As repackQ8_0x8 for Q4_0 blocks, whose quants become the signed bytes q−8.
TEXT ·repackQ4_0x8(SB), NOSPLIT, $0-32
	ROWPTRS
	MOVQ nb+16(FP), R13
	MOVQ dst+24(FP), DI
	VMOVDQU32 gbytes01<>(SB), Y16
rq4_loop:
	LOADQ4_0(AX, X0, Y0)
	LOADQ4_0(BX, X1, Y1)
	LOADQ4_0(CX, X2, Y2)
	LOADQ4_0(DX, X3, Y3)
	LOADQ4_0(SI, X4, Y4)
	LOADQ4_0(R8, X5, Y5)
	LOADQ4_0(R9, X6, Y6)
	LOADQ4_0(R10, X7, Y7)
	TRANSPOSE8
	STOREQ8
	ADVANCE(18)
	DECQ R13
	JNZ rq4_loop
	VZEROUPPER
	RET

// DOT4(k, W, A) adds chunk k of the current block of 4 columns (R8…R11) to the
// accumulators A: each column's 4 bytes, made unsigned by flipping the sign
// bit (Y15 = 0x80…), times the signed weights W.
#define DOT4(k, A0, A1, A2, A3) \
	VMOVDQU (k*32)(SI), Y12 \
	VPXORD.BCST (2+4*k)(R8), Y15, Y13 \
	VPDPBUSD Y12, Y13, A0 \
	VPXORD.BCST (2+4*k)(R9), Y15, Y14 \
	VPDPBUSD Y12, Y14, A1 \
	VPXORD.BCST (2+4*k)(R10), Y15, Y13 \
	VPDPBUSD Y12, Y13, A2 \
	VPXORD.BCST (2+4*k)(R11), Y15, Y14 \
	VPDPBUSD Y12, Y14, A3

// FINISH(A, B, xp, F): F += float(A + B − 128·Σw) · d_w · d_x for one column.
#define FINISH(A, B, xp, F) \
	VPADDD B, A, A \
	VPSUBD 256(SI), A, A \
	VCVTDQ2PS A, A \
	VPBROADCASTW (xp), X13 \
	VCVTPH2PS X13, Y13 \
	VMULPS 288(SI), Y13, Y13 \
	VFMADD231PS Y13, A, F

// STORE(F, ptr): *ptr = F, or *ptr += F when R13 (acc) is not 0.
#define STORE(F, ptr) \
	TESTQ R13, R13 \
	JZ 3(PC) \
	VADDPS (ptr), F, F \
	VMOVUPS F, (ptr) \
	VMOVUPS F, (ptr)

// func gemmQ8x8VNNI(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)
// For the 8 rows repacked at p (nb records) and cols Q8_0 activation vectors
// at x (xStride bytes apart), writes (acc = 0) or adds (acc ≠ 0) the 8 dot
// products of column c to out[c·outStride : c·outStride+8].
TEXT ·gemmQ8x8VNNI(SB), NOSPLIT, $0-64
	MOVQ x+16(FP), R8
	MOVQ xStride+24(FP), BX
	MOVQ cols+32(FP), R12
	MOVQ out+40(FP), DI
	MOVQ outStride+48(FP), DX
	SHLQ $2, DX
	MOVQ acc+56(FP), R13
	VMOVDQU gbytes80<>(SB), Y15
q8g_quad:
	CMPQ R12, $4
	JLT q8g_single
	LEAQ (R8)(BX*1), R9
	LEAQ (R8)(BX*2), R10
	LEAQ (R9)(BX*2), R11
	MOVQ p+0(FP), SI
	MOVQ nb+8(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ R8, AX
q8g_qblock:
	VPXOR Y4, Y4, Y4
	VPXOR Y5, Y5, Y5
	VPXOR Y6, Y6, Y6
	VPXOR Y7, Y7, Y7
	VPXOR Y8, Y8, Y8
	VPXOR Y9, Y9, Y9
	VPXOR Y10, Y10, Y10
	VPXOR Y11, Y11, Y11
	DOT4(0, Y4, Y5, Y6, Y7)
	DOT4(1, Y8, Y9, Y10, Y11)
	DOT4(2, Y4, Y5, Y6, Y7)
	DOT4(3, Y8, Y9, Y10, Y11)
	DOT4(4, Y4, Y5, Y6, Y7)
	DOT4(5, Y8, Y9, Y10, Y11)
	DOT4(6, Y4, Y5, Y6, Y7)
	DOT4(7, Y8, Y9, Y10, Y11)
	FINISH(Y4, Y8, R8, Y0)
	FINISH(Y5, Y9, R9, Y1)
	FINISH(Y6, Y10, R10, Y2)
	FINISH(Y7, Y11, R11, Y3)
	ADDQ $34, R8
	ADDQ $34, R9
	ADDQ $34, R10
	ADDQ $34, R11
	ADDQ $320, SI
	DECQ CX
	JNZ q8g_qblock
	MOVQ AX, R8
	MOVQ DI, AX
	STORE(Y0, AX)
	ADDQ DX, AX
	STORE(Y1, AX)
	ADDQ DX, AX
	STORE(Y2, AX)
	ADDQ DX, AX
	STORE(Y3, AX)
	LEAQ (R8)(BX*4), R8
	LEAQ (DI)(DX*4), DI
	SUBQ $4, R12
	JMP q8g_quad
q8g_single:
	TESTQ R12, R12
	JZ q8g_done
	MOVQ p+0(FP), SI
	MOVQ nb+8(FP), CX
	MOVQ R8, R9
	VXORPS Y0, Y0, Y0
q8g_sblock:
	VPXOR Y4, Y4, Y4
	VPXOR Y8, Y8, Y8
	VPXORD.BCST 2(R9), Y15, Y13
	VPDPBUSD 0(SI), Y13, Y4
	VPXORD.BCST 6(R9), Y15, Y14
	VPDPBUSD 32(SI), Y14, Y8
	VPXORD.BCST 10(R9), Y15, Y13
	VPDPBUSD 64(SI), Y13, Y4
	VPXORD.BCST 14(R9), Y15, Y14
	VPDPBUSD 96(SI), Y14, Y8
	VPXORD.BCST 18(R9), Y15, Y13
	VPDPBUSD 128(SI), Y13, Y4
	VPXORD.BCST 22(R9), Y15, Y14
	VPDPBUSD 160(SI), Y14, Y8
	VPXORD.BCST 26(R9), Y15, Y13
	VPDPBUSD 192(SI), Y13, Y4
	VPXORD.BCST 30(R9), Y15, Y14
	VPDPBUSD 224(SI), Y14, Y8
	FINISH(Y4, Y8, R9, Y0)
	ADDQ $34, R9
	ADDQ $320, SI
	DECQ CX
	JNZ q8g_sblock
	STORE(Y0, DI)
	ADDQ BX, R8
	ADDQ DX, DI
	DECQ R12
	JMP q8g_single
q8g_done:
	VZEROUPPER
	RET
