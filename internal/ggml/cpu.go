package ggml

import "golang.org/x/sys/cpu"

// CPU features the assembly kernels need, read once at start-up. DisableSIMD
// forces the portable Go kernels, which compute the same results. useVNNI
// adds the AVX-512 VNNI Gemm kernels (8-row tiles with VPDPBUSD on 256-bit
// vectors), which need AVX-512 F, VL and VNNI on top of AVX2.
var (
	useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasAVX
	useVNNI = useAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VNNI
	// useGFNI adds, on top of useVNNI, the GemvN kernels for Q6_K that pick
	// bits with VGF2P8AFFINEQB (AVX-512 GFNI).
	useGFNI = useVNNI && cpu.X86.HasAVX512GFNI
)

// SIMD names the instruction set the kernels use on this machine
// ("avx2+avx512vnni", "avx2" or "generic").
func SIMD() string {
	switch {
	case useVNNI:
		return "avx2+avx512vnni"
	case useAVX2:
		return "avx2"
	}
	return "generic"
}

// DisableSIMD makes every kernel use the portable Go code from now on. It is
// meant for tests and benchmarks that compare the two, and must be called before
// any concurrent use of the package.
func DisableSIMD() { useAVX2, useVNNI = false, false }

// LimitSIMD restricts the kernels to at most the named level ("generic" or
// "avx2"; anything else leaves the detected level) and returns a function
// that restores the previous one. Like DisableSIMD it is for tests, which
// must not run kernels concurrently while they switch.
func LimitSIMD(level string) (restore func()) {
	avx2, vnni := useAVX2, useVNNI
	switch level {
	case "generic":
		useAVX2, useVNNI = false, false
	case "avx2":
		useVNNI = false
	}
	return func() { useAVX2, useVNNI = avx2, vnni }
}
