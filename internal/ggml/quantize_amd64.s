//go:build amd64

#include "textflag.h"

// The AVX2 activation quantizers (Q8_0, Q8_K) and F32 to F16 conversion,
// written by hand. The Gemv kernels are generated into gemv_amd64.s.

DATA absMask<>+0(SB)/4, $0x7fffffff
GLOBL absMask<>(SB), RODATA|NOPTR, $4

DATA f127<>+0(SB)/4, $0x42fe0000
GLOBL f127<>(SB), RODATA|NOPTR, $4

DATA packPerm<>+0(SB)/4, $0
DATA packPerm<>+4(SB)/4, $4
DATA packPerm<>+8(SB)/4, $1
DATA packPerm<>+12(SB)/4, $5
DATA packPerm<>+16(SB)/4, $2
DATA packPerm<>+20(SB)/4, $6
DATA packPerm<>+24(SB)/4, $3
DATA packPerm<>+28(SB)/4, $7
GLOBL packPerm<>(SB), RODATA|NOPTR, $32

DATA fm128<>+0(SB)/4, $0xc3000000
GLOBL fm128<>(SB), RODATA|NOPTR, $4

// Q8CLAMP(Y): NaN lanes of Y become 0, the rest are clamped to [-128, 127].
#define Q8CLAMP(Y) \
	VCMPPS $3, Y, Y, Y8 \
	VANDNPS Y, Y8, Y \
	VBROADCASTSS f127<>(SB), Y9 \
	VMINPS Y9, Y, Y \
	VBROADCASTSS fm128<>(SB), Y9 \
	VMAXPS Y9, Y, Y

// func quantizeQ8_0AVX2(src *float32, dst *byte, nb int)
// quantizeRowQ8_0 for nb blocks, as ggml's AVX2 quantize_row_q8_0: amax =
// max|x|, d = F16(amax/127), q = x·(127/amax) rounded to nearest even (the
// default MXCSR mode), saturated to int8 by the packs.
TEXT ·quantizeQ8_0AVX2(SB), NOSPLIT, $0-24
	MOVQ src+0(FP), SI
	MOVQ dst+8(FP), DI
	MOVQ nb+16(FP), CX
	VBROADCASTSS absMask<>(SB), Y15
	VBROADCASTSS f127<>(SB), X14
	VMOVDQU packPerm<>(SB), Y13
	VXORPS X12, X12, X12
q8q_loop:
	VMOVUPS 0(SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VANDPS Y15, Y0, Y4
	VANDPS Y15, Y1, Y5
	VANDPS Y15, Y2, Y6
	VANDPS Y15, Y3, Y7
	VMAXPS Y5, Y4, Y4
	VMAXPS Y7, Y6, Y6
	VMAXPS Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VMAXPS X5, X4, X4
	VMOVHLPS X4, X4, X5
	VMAXPS X5, X4, X4
	VMOVSHDUP X4, X5
	VMAXSS X5, X4, X4
	// d = amax/127 as F16
	VDIVSS X14, X4, X5
	VCVTPS2PH $0, X5, X5
	VMOVD X5, DX
	MOVW DX, (DI)
	// id = 127/amax, or 0 when amax is 0
	VDIVSS X4, X14, X6
	VCMPSS $4, X12, X4, X7
	VANDPS X7, X6, X6
	VBROADCASTSS X6, Y6
	VMULPS Y6, Y0, Y0
	VMULPS Y6, Y1, Y1
	VMULPS Y6, Y2, Y2
	VMULPS Y6, Y3, Y3
	// A subnormal amax makes id infinite: products are then ±Inf or NaN
	// (0·Inf), which the Go code rounds to ±127/-128 and 0.
	VMOVD X6, DX
	CMPL DX, $0x7f800000
	JNE q8q_round
	Q8CLAMP(Y0)
	Q8CLAMP(Y1)
	Q8CLAMP(Y2)
	Q8CLAMP(Y3)
q8q_round:
	VCVTPS2DQ Y0, Y0
	VCVTPS2DQ Y1, Y1
	VCVTPS2DQ Y2, Y2
	VCVTPS2DQ Y3, Y3
	VPACKSSDW Y1, Y0, Y0
	VPACKSSDW Y3, Y2, Y2
	VPACKSSWB Y2, Y0, Y0
	VPERMD Y0, Y13, Y0
	VMOVDQU Y0, 2(DI)
	ADDQ $128, SI
	ADDQ $34, DI
	DECQ CX
	JNZ q8q_loop
	VZEROUPPER
	RET

DATA f1<>+0(SB)/4, $0x3f800000
GLOBL f1<>(SB), RODATA|NOPTR, $4

DATA fm127<>+0(SB)/4, $0xc2fe0000
GLOBL fm127<>(SB), RODATA|NOPTR, $4

// func quantizeQ8KAVX2(src *float32, dst *byte, nb int)
// quantizeRowQ8K for nb blocks of 256: max is the first element of largest
// magnitude, iscale = -127/max, q = nearest-even(iscale·x) saturated to int8,
// bsums of each 16, d = 1/iscale; an all-zero block encodes as zeros.
TEXT ·quantizeQ8KAVX2(SB), NOSPLIT, $0-24
	MOVQ src+0(FP), SI
	MOVQ dst+8(FP), DI
	MOVQ nb+16(FP), CX
	VBROADCASTSS absMask<>(SB), Y15
	VMOVDQU packPerm<>(SB), Y13
q8k_block:
	// amax over the 32 vectors
	VANDPS 0(SI), Y15, Y0
	VANDPS 32(SI), Y15, Y1
	VANDPS 64(SI), Y15, Y2
	VANDPS 96(SI), Y15, Y3
	MOVQ $128, AX
q8k_max:
	VANDPS 0(SI)(AX*1), Y15, Y4
	VMAXPS Y4, Y0, Y0
	VANDPS 32(SI)(AX*1), Y15, Y4
	VMAXPS Y4, Y1, Y1
	VANDPS 64(SI)(AX*1), Y15, Y4
	VMAXPS Y4, Y2, Y2
	VANDPS 96(SI)(AX*1), Y15, Y4
	VMAXPS Y4, Y3, Y3
	ADDQ $128, AX
	CMPQ AX, $1024
	JLT q8k_max
	VMAXPS Y1, Y0, Y0
	VMAXPS Y3, Y2, Y2
	VMAXPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VMOVHLPS X0, X0, X1
	VMAXPS X1, X0, X0
	VMOVSHDUP X0, X1
	VMAXSS X1, X0, X0
	VXORPS X1, X1, X1
	VUCOMISS X1, X0
	JNE q8k_find
	JP q8k_find
	// all zero: clear the 292 bytes
	VPXOR Y0, Y0, Y0
	MOVQ $0, AX
q8k_clear:
	VMOVDQU Y0, (DI)(AX*1)
	ADDQ $32, AX
	CMPQ AX, $288
	JLT q8k_clear
	MOVL $0, 288(DI)
	JMP q8k_next
q8k_find:
	// the first element whose magnitude is amax gives max with its sign
	VBROADCASTSS X0, Y0
	MOVQ $0, AX
q8k_scan:
	VANDPS (SI)(AX*4), Y15, Y1
	VCMPPS $0, Y0, Y1, Y1
	VMOVMSKPS Y1, DX
	TESTL DX, DX
	JNZ q8k_found
	ADDQ $8, AX
	CMPQ AX, $256
	JLT q8k_scan
	// no lane compared equal (NaN input): fall back to lane 0
	MOVQ $0, AX
	MOVL $1, DX
q8k_found:
	BSFL DX, DX
	ADDQ DX, AX
	VMOVSS (SI)(AX*4), X1
	// iscale = -127/max, d = 1/iscale
	VMOVSS fm127<>(SB), X2
	VDIVSS X1, X2, X2
	VMOVSS f1<>(SB), X3
	VDIVSS X2, X3, X3
	VMOVSS X3, (DI)
	VBROADCASTSS X2, Y14
	// R12 ≠ 0 when iscale is infinite (a subnormal max): clamp the products
	VMOVD X2, R12
	ANDL $0x7fffffff, R12
	CMPL R12, $0x7f800000
	SETEQ R12B
	MOVQ $0, AX
q8k_quant:
	VMULPS 0(SI), Y14, Y0
	VMULPS 32(SI), Y14, Y1
	VMULPS 64(SI), Y14, Y2
	VMULPS 96(SI), Y14, Y3
	TESTB R12B, R12B
	JZ q8k_round
	Q8CLAMP(Y0)
	Q8CLAMP(Y1)
	Q8CLAMP(Y2)
	Q8CLAMP(Y3)
q8k_round:
	VCVTPS2DQ Y0, Y0
	VCVTPS2DQ Y1, Y1
	VCVTPS2DQ Y2, Y2
	VCVTPS2DQ Y3, Y3
	VPACKSSDW Y1, Y0, Y0
	VPACKSSDW Y3, Y2, Y2
	VPACKSSWB Y2, Y0, Y0
	VPERMD Y0, Y13, Y0
	VMOVDQU Y0, 4(DI)(AX*8)
	// bsums of the two groups of 16 (bytes 0-15 and 16-31): widen to words,
	// three horizontal adds leave each group's halves in words 0 and 1 of
	// the two 128-bit lanes, then add the lanes
	VPMOVSXBW X0, Y1
	VEXTRACTI128 $1, Y0, X2
	VPMOVSXBW X2, Y2
	VPHADDW Y2, Y1, Y1
	VPHADDW Y1, Y1, Y1
	VPHADDW Y1, Y1, Y1
	VEXTRACTI128 $1, Y1, X2
	VPADDW X2, X1, X1
	VMOVD X1, DX
	MOVL DX, 260(DI)(AX*1)
	ADDQ $128, SI
	ADDQ $4, AX
	CMPQ AX, $32
	JLT q8k_quant
	SUBQ $1024, SI
q8k_next:
	ADDQ $1024, SI
	ADDQ $292, DI
	DECQ CX
	JNZ q8k_block
	VZEROUPPER
	RET

// func f32ToF16AVX2(dst *uint16, src *float32, n int)
// Converts n (a multiple of 8, ≥ 8) floats with VCVTPS2PH, rounding to
// nearest even as F32ToF16 does.
TEXT ·f32ToF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
f2h_loop:
	VMOVUPS (SI), Y0
	VCVTPS2PH $0, Y0, X0
	VMOVDQU X0, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	SUBQ $8, CX
	JNZ f2h_loop
	VZEROUPPER
	RET
