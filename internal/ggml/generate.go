package ggml

// The unrolled assembly kernels are printed by the Python 3 scripts in
// asmgen; each generated .s file says so in its first line. After changing a
// script, run go generate in this directory and commit both; the package's
// tests check that every script still prints its file byte for byte.

//go:generate python3 -B asmgen/gemv.py gemv_amd64.s
//go:generate python3 -B asmgen/gemm_q8_avx2.py gemm_q8_avx2_amd64.s
//go:generate python3 -B asmgen/gemm_q8_vnni16.py gemm_q8_vnni16_amd64.s
//go:generate python3 -B asmgen/gemm_kquant_vnni8.py gemm_kquant_vnni8_amd64.s
//go:generate python3 -B asmgen/gemm_kquant_vnni16.py gemm_kquant_vnni16_amd64.s
//go:generate python3 -B asmgen/gemm_kquant_avx2.py gemm_kquant_avx2_amd64.s
//go:generate python3 -B asmgen/gemvn.py gemvn_amd64.s
//go:generate python3 -B asmgen/attn.py attn_amd64.s
