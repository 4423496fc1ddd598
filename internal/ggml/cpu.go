package ggml

import "golang.org/x/sys/cpu"

// CPU features the assembly kernels need, read once at start-up. DisableSIMD
// forces the portable Go kernels, which compute the same results.
var (
	useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasAVX
)

// SIMD names the instruction set the kernels use on this machine ("avx2" or "generic").
func SIMD() string {
	if useAVX2 {
		return "avx2"
	}
	return "generic"
}

// DisableSIMD makes every kernel use the portable Go code from now on. It is
// meant for tests and benchmarks that compare the two, and must be called before
// any concurrent use of the package.
func DisableSIMD() { useAVX2 = false }
