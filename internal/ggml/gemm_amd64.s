//go:build amd64

#include "textflag.h"

// Gemm kernels for 8 weight rows at a time. The weights are first repacked
// (repack* below) so that each 32-byte vector holds 4 consecutive quants of
// each of the 8 rows ("row-interleaved"): lane i of a dot-product vector then
// belongs to row i, and one VPDPBUSD with 4 bytes of one activation vector
// broadcast to all lanes advances 8 row × column products at once. The float
// work (block scales) is then done once per 8 products instead of once per
// product. See gemm_amd64.go for the buffer layouts.
//
// This file holds what is written by hand: the repacks, gemmQ8x8VNNI and
// prefetchRows. The other kernels are unrolled by the scripts in asmgen into
// gemm_q8_avx2_amd64.s, gemm_q8_vnni16_amd64.s and gemm_kquant_*_amd64.s
// (go generate rewrites them; edit the scripts, not those files).

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

DATA gwords01<>+0(SB)/8, $0x0001000100010001
DATA gwords01<>+8(SB)/8, $0x0001000100010001
DATA gwords01<>+16(SB)/8, $0x0001000100010001
DATA gwords01<>+24(SB)/8, $0x0001000100010001
GLOBL gwords01<>(SB), RODATA|NOPTR, $32

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
// 256(DI) and the 8 F16 scales at 0(row) as float32 at 288(DI). AVX2 only:
// the row sums come from VPMADDUBSW by bytes of 1 and VPMADDWD by words of 1.
#define STOREQ8 \
	VMOVDQU Y8, 0(DI) \
	VMOVDQU Y9, 32(DI) \
	VMOVDQU Y10, 64(DI) \
	VMOVDQU Y11, 96(DI) \
	VMOVDQU Y12, 128(DI) \
	VMOVDQU Y13, 160(DI) \
	VMOVDQU Y14, 192(DI) \
	VMOVDQU Y15, 224(DI) \
	VMOVDQU gbytes01<>(SB), Y0 \
	VPMADDUBSW Y8, Y0, Y1 \
	VPMADDUBSW Y9, Y0, Y2 \
	VPADDW Y2, Y1, Y1 \
	VPMADDUBSW Y10, Y0, Y2 \
	VPADDW Y2, Y1, Y1 \
	VPMADDUBSW Y11, Y0, Y2 \
	VPADDW Y2, Y1, Y1 \
	VPMADDWD gwords01<>(SB), Y1, Y1 \
	VPMADDUBSW Y12, Y0, Y3 \
	VPMADDUBSW Y13, Y0, Y2 \
	VPADDW Y2, Y3, Y3 \
	VPMADDUBSW Y14, Y0, Y2 \
	VPADDW Y2, Y3, Y3 \
	VPMADDUBSW Y15, Y0, Y2 \
	VPADDW Y2, Y3, Y3 \
	VPMADDWD gwords01<>(SB), Y3, Y3 \
	VPADDD Y3, Y1, Y1 \
	VPSLLD $7, Y1, Y1 \
	VMOVDQU Y1, 256(DI) \
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
	ADDQ R11, DI

// func repackQ8_0x8(w *byte, stride int, nb int, dst *byte, recStride int)
// Repacks nb Q8_0 blocks of 8 rows into 320-byte records recStride bytes
// apart: 8 interleaved 32-byte vectors of quants, 8 int32 128·Σq, 8 float32
// scales.
TEXT ·repackQ8_0x8(SB), NOSPLIT, $0-40
	ROWPTRS
	MOVQ recStride+32(FP), R11
	MOVQ nb+16(FP), R13
	MOVQ dst+24(FP), DI
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

// func repackQ4_0x8(w *byte, stride int, nb int, dst *byte, recStride int)
// As repackQ8_0x8 for Q4_0 blocks, whose quants become the signed bytes q−8.
TEXT ·repackQ4_0x8(SB), NOSPLIT, $0-40
	ROWPTRS
	MOVQ recStride+32(FP), R11
	MOVQ nb+16(FP), R13
	MOVQ dst+24(FP), DI
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

// ---- K-quants ----------------------------------------------------------
// The repacks use AVX2 only; the kernels (generated) come in a VNNI and an
// AVX2 form.
//
// Record per super-block of 8 rows (2880 bytes), see gemm_amd64.go:
//   0     64 vectors: vector m holds quants 4m…4m+3 of rows 0…7 (unsigned)
//   2048  16 vectors of int32 group scales S_g (Q4_K, Q5_K: 8 of 32 elements)
//   2560  8 vectors of int16 pairs M_p for the bsum term
//   2816  float32 dA of the 8 rows, 2848 float32 dB
// Rows are addressed from AX (rows 0-3) and BX (rows 4-7) with R11 = stride
// and R12 = 3·stride.

DATA gbytes03<>+0(SB)/8, $0x0303030303030303
DATA gbytes03<>+8(SB)/8, $0x0303030303030303
DATA gbytes03<>+16(SB)/8, $0x0303030303030303
DATA gbytes03<>+24(SB)/8, $0x0303030303030303
GLOBL gbytes03<>(SB), RODATA|NOPTR, $32

DATA gf32x32<>+0(SB)/4, $0x42000000
GLOBL gf32x32<>(SB), RODATA|NOPTR, $4

#define KROWS \
	MOVQ w+0(FP), AX \
	MOVQ stride+8(FP), R11 \
	LEAQ (R11)(R11*2), R12 \
	LEAQ (AX)(R11*4), BX \
	MOVQ nb+16(FP), R13 \
	MOVQ dst+24(FP), DI

#define LOAD8(off) \
	VMOVDQU off(AX), Y0 \
	VMOVDQU off(AX)(R11*1), Y1 \
	VMOVDQU off(AX)(R11*2), Y2 \
	VMOVDQU off(AX)(R12*1), Y3 \
	VMOVDQU off(BX), Y4 \
	VMOVDQU off(BX)(R11*1), Y5 \
	VMOVDQU off(BX)(R11*2), Y6 \
	VMOVDQU off(BX)(R12*1), Y7

#define AND8(mask) \
	VPAND mask, Y0, Y0 \
	VPAND mask, Y1, Y1 \
	VPAND mask, Y2, Y2 \
	VPAND mask, Y3, Y3 \
	VPAND mask, Y4, Y4 \
	VPAND mask, Y5, Y5 \
	VPAND mask, Y6, Y6 \
	VPAND mask, Y7, Y7

#define SRLW8(n) \
	VPSRLW $n, Y0, Y0 \
	VPSRLW $n, Y1, Y1 \
	VPSRLW $n, Y2, Y2 \
	VPSRLW $n, Y3, Y3 \
	VPSRLW $n, Y4, Y4 \
	VPSRLW $n, Y5, Y5 \
	VPSRLW $n, Y6, Y6 \
	VPSRLW $n, Y7, Y7

#define STORE8(off) \
	VMOVDQU Y8, (off)(DI) \
	VMOVDQU Y9, (off+32)(DI) \
	VMOVDQU Y10, (off+64)(DI) \
	VMOVDQU Y11, (off+96)(DI) \
	VMOVDQU Y12, (off+128)(DI) \
	VMOVDQU Y13, (off+160)(DI) \
	VMOVDQU Y14, (off+192)(DI) \
	VMOVDQU Y15, (off+224)(DI)

// HIBITS(Yr, addr, shift, mask): Yr |= ((bytes at addr) >> shift & mask) << 4,
// per byte. Clobbers Y8.
#define HIBITS(Yr, addr, shift, mask) \
	VMOVDQU addr, Y8 \
	VPSRLW $shift, Y8, Y8 \
	VPAND mask, Y8, Y8 \
	VPSLLW $4, Y8, Y8 \
	VPOR Y8, Yr, Yr

#define HIBITS8(off, shift, mask) \
	HIBITS(Y0, off(AX), shift, mask) \
	HIBITS(Y1, off(AX)(R11*1), shift, mask) \
	HIBITS(Y2, off(AX)(R11*2), shift, mask) \
	HIBITS(Y3, off(AX)(R12*1), shift, mask) \
	HIBITS(Y4, off(BX), shift, mask) \
	HIBITS(Y5, off(BX)(R11*1), shift, mask) \
	HIBITS(Y6, off(BX)(R11*2), shift, mask) \
	HIBITS(Y7, off(BX)(R12*1), shift, mask)

// F16ROWS(off, dstoff): the 8 rows' F16 at off as float32 at dstoff(DI).
#define F16ROWS(off, dstoff) \
	MOVWLZX off(AX), CX \
	VMOVD CX, X0 \
	VPINSRW $1, off(AX)(R11*1), X0, X0 \
	VPINSRW $2, off(AX)(R11*2), X0, X0 \
	VPINSRW $3, off(AX)(R12*1), X0, X0 \
	VPINSRW $4, off(BX), X0, X0 \
	VPINSRW $5, off(BX)(R11*1), X0, X0 \
	VPINSRW $6, off(BX)(R11*2), X0, X0 \
	VPINSRW $7, off(BX)(R12*1), X0, X0 \
	VCVTPH2PS X0, Y0 \
	VMOVUPS Y0, dstoff(DI)

// SCMIN: the 8 6-bit scales (R10) and mins (CX) of the Q4_K/Q5_K block at SI,
// as ggml's get_scale_min_k4. Clobbers DX, R8, R9.
#define SCMIN \
	MOVL 4(SI), DX \
	MOVL 8(SI), R8 \
	MOVL 12(SI), R9 \
	MOVL DX, R10 \
	ANDL $0x3f3f3f3f, R10 \
	MOVL R9, CX \
	ANDL $0x0f0f0f0f, CX \
	SHRL $6, DX \
	ANDL $0x03030303, DX \
	SHLL $4, DX \
	ORL DX, CX \
	SHLQ $32, CX \
	ORQ CX, R10 \
	MOVL R8, CX \
	ANDL $0x3f3f3f3f, CX \
	SHRL $4, R9 \
	ANDL $0x0f0f0f0f, R9 \
	SHRL $6, R8 \
	ANDL $0x03030303, R8 \
	SHLL $4, R8 \
	ORL R8, R9 \
	SHLQ $32, R9 \
	ORQ R9, CX

// SCROW(addr, Xr, Yr): scales of the row at addr, as 8 int32 in Yr.
#define SCROW(addr, Xr, Yr) \
	LEAQ addr, SI \
	SCMIN \
	VMOVQ R10, Xr \
	VPMOVZXBD Xr, Yr

// MINROW(addr, Xr, Yr): mins of the row at addr, as 8 int16 pairs (m, m).
#define MINROW(addr, Xr, Yr) \
	LEAQ addr, SI \
	SCMIN \
	VMOVQ CX, Xr \
	VPMOVZXBD Xr, Yr \
	VPSLLD $16, Yr, Y15 \
	VPOR Y15, Yr, Yr

// KSCALES stores S_0…S_7, M_0…M_7, dA = d and dB = dmin of a Q4_K or Q5_K
// super-block of 8 rows.
#define KSCALES \
	SCROW(0(AX), X0, Y0) \
	SCROW(0(AX)(R11*1), X1, Y1) \
	SCROW(0(AX)(R11*2), X2, Y2) \
	SCROW(0(AX)(R12*1), X3, Y3) \
	SCROW(0(BX), X4, Y4) \
	SCROW(0(BX)(R11*1), X5, Y5) \
	SCROW(0(BX)(R11*2), X6, Y6) \
	SCROW(0(BX)(R12*1), X7, Y7) \
	TRANSPOSE8 \
	STORE8(2048) \
	MINROW(0(AX), X0, Y0) \
	MINROW(0(AX)(R11*1), X1, Y1) \
	MINROW(0(AX)(R11*2), X2, Y2) \
	MINROW(0(AX)(R12*1), X3, Y3) \
	MINROW(0(BX), X4, Y4) \
	MINROW(0(BX)(R11*1), X5, Y5) \
	MINROW(0(BX)(R11*2), X6, Y6) \
	MINROW(0(BX)(R12*1), X7, Y7) \
	TRANSPOSE8 \
	STORE8(2560) \
	F16ROWS(0, 2816) \
	F16ROWS(2, 2848)

#define KNEXT(size) \
	ADDQ $size, AX \
	ADDQ $size, BX \
	ADDQ recStride+32(FP), DI \
	DECQ R13

// func repackQ4Kx8(w *byte, stride int, nb int, dst *byte, recStride int)
TEXT ·repackQ4Kx8(SB), NOSPLIT, $0-40
	KROWS
rq4k_loop:
	LOAD8(16)
	AND8(gnib0F<>(SB))
	TRANSPOSE8
	STORE8(0)
	LOAD8(16)
	SRLW8(4)
	AND8(gnib0F<>(SB))
	TRANSPOSE8
	STORE8(256)
	LOAD8(48)
	AND8(gnib0F<>(SB))
	TRANSPOSE8
	STORE8(512)
	LOAD8(48)
	SRLW8(4)
	AND8(gnib0F<>(SB))
	TRANSPOSE8
	STORE8(768)
	LOAD8(80)
	AND8(gnib0F<>(SB))
	TRANSPOSE8
	STORE8(1024)
	LOAD8(80)
	SRLW8(4)
	AND8(gnib0F<>(SB))
	TRANSPOSE8
	STORE8(1280)
	LOAD8(112)
	AND8(gnib0F<>(SB))
	TRANSPOSE8
	STORE8(1536)
	LOAD8(112)
	SRLW8(4)
	AND8(gnib0F<>(SB))
	TRANSPOSE8
	STORE8(1792)
	KSCALES
	KNEXT(144)
	JNZ rq4k_loop
	VZEROUPPER
	RET

// Q5_K: vector v (elements 32v…32v+31) is the nibble of qs[32(v/2)…] (low
// for even v) with bit v of qh[0…31] above it.
#define Q5V(v, qsoff, shift4) \
	LOAD8(qsoff) \
	shift4 \
	AND8(gnib0F<>(SB)) \
	HIBITS8(16, v, gbytes01<>(SB)) \
	TRANSPOSE8 \
	STORE8(256*v)

#define NOSHIFT
#define SHIFT4 SRLW8(4)

// func repackQ5Kx8(w *byte, stride int, nb int, dst *byte, recStride int)
TEXT ·repackQ5Kx8(SB), NOSPLIT, $0-40
	KROWS
rq5k_loop:
	Q5V(0, 48, NOSHIFT)
	Q5V(1, 48, SHIFT4)
	Q5V(2, 80, NOSHIFT)
	Q5V(3, 80, SHIFT4)
	Q5V(4, 112, NOSHIFT)
	Q5V(5, 112, SHIFT4)
	Q5V(6, 144, NOSHIFT)
	Q5V(7, 144, SHIFT4)
	KSCALES
	KNEXT(176)
	JNZ rq5k_loop
	VZEROUPPER
	RET

// Q6_K: vector v = 4h+s (elements 128h+32s+l) is the nibble of
// ql[64h+32(s&1)+l] (low for s < 2) with bits 2s, 2s+1 of qh[32h+l] above it.
#define Q6V(v, qloff, shift4, qhoff, hshift) \
	LOAD8(qloff) \
	shift4 \
	AND8(gnib0F<>(SB)) \
	HIBITS8(qhoff, hshift, gbytes03<>(SB)) \
	TRANSPOSE8 \
	STORE8(256*v)

// SC6ROW(addr, Yr): 8 int8 scales at addr sign-extended to int32.
#define SC6ROWS(off) \
	VPMOVSXBD off(AX), Y0 \
	VPMOVSXBD off(AX)(R11*1), Y1 \
	VPMOVSXBD off(AX)(R11*2), Y2 \
	VPMOVSXBD off(AX)(R12*1), Y3 \
	VPMOVSXBD off(BX), Y4 \
	VPMOVSXBD off(BX)(R11*1), Y5 \
	VPMOVSXBD off(BX)(R11*2), Y6 \
	VPMOVSXBD off(BX)(R12*1), Y7

// func repackQ6Kx8(w *byte, stride int, nb int, dst *byte, recStride int)
// S_g are the 16 int8 scales, M_p the scale pairs (sc_2p, sc_2p+1) as int16,
// dA = d and dB = 32·d (the quants are stored +32).
TEXT ·repackQ6Kx8(SB), NOSPLIT, $0-40
	KROWS
rq6k_loop:
	Q6V(0, 0, NOSHIFT, 128, 0)
	Q6V(1, 32, NOSHIFT, 128, 2)
	Q6V(2, 0, SHIFT4, 128, 4)
	Q6V(3, 32, SHIFT4, 128, 6)
	Q6V(4, 64, NOSHIFT, 160, 0)
	Q6V(5, 96, NOSHIFT, 160, 2)
	Q6V(6, 64, SHIFT4, 160, 4)
	Q6V(7, 96, SHIFT4, 160, 6)
	SC6ROWS(192)
	TRANSPOSE8
	STORE8(2048)
	SC6ROWS(200)
	TRANSPOSE8
	STORE8(2304)
	VPMOVSXBW 192(AX), Y0
	VPMOVSXBW 192(AX)(R11*1), Y1
	VPMOVSXBW 192(AX)(R11*2), Y2
	VPMOVSXBW 192(AX)(R12*1), Y3
	VPMOVSXBW 192(BX), Y4
	VPMOVSXBW 192(BX)(R11*1), Y5
	VPMOVSXBW 192(BX)(R11*2), Y6
	VPMOVSXBW 192(BX)(R12*1), Y7
	TRANSPOSE8
	STORE8(2560)
	F16ROWS(208, 2816)
	VBROADCASTSS gf32x32<>(SB), Y1
	VMULPS Y1, Y0, Y0
	VMOVUPS Y0, 2848(DI)
	KNEXT(210)
	JNZ rq6k_loop
	VZEROUPPER
	RET

// func prefetchRows(w *byte, stride int, rows int, n int)
// Prefetches (into L2, to spare the kernel's L1) the first n bytes of rows
// rows stride bytes apart, one cache line at a time: the next run of weights
// a Gemm will repack, fetched from memory while the kernel works on the
// current one.
TEXT ·prefetchRows(SB), NOSPLIT, $0-32
	MOVQ w+0(FP), SI
	MOVQ stride+8(FP), BX
	MOVQ rows+16(FP), CX
	MOVQ n+24(FP), DX
	TESTQ CX, CX
	JZ pf_done
	TESTQ DX, DX
	JZ pf_done
pf_row:
	MOVQ $0, AX
pf_line:
	PREFETCHT1 (SI)(AX*1)
	ADDQ $64, AX
	CMPQ AX, DX
	JLT pf_line
	ADDQ BX, SI
	DECQ CX
	JNZ pf_row
pf_done:
	RET
