package pool

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/sysmem"
)

func TestParseMemAvailable(t *testing.T) {
	cases := []struct {
		name string
		in   string
		kb   int64
		ok   bool
	}{
		{"typical", "MemTotal:       16318480 kB\nMemFree:         1203432 kB\nMemAvailable:    9876543 kB\nBuffers: 1 kB\n", 9876543, true},
		{"first line", "MemAvailable: 42 kB\n", 42, true},
		{"missing", "MemTotal: 1 kB\nMemFree: 1 kB\n", 0, false},
		{"bad number", "MemAvailable: lots kB\n", 0, false},
		{"no unit", "MemAvailable: 12\n", 0, false},
		{"empty", "", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kb, err := sysmem.ParseMemAvailable(strings.NewReader(tc.in))
			if !tc.ok {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.kb, kb)
		})
	}
}

func TestMemAvailableMBReadsProc(t *testing.T) {
	mb, err := MemAvailableMB()
	if err != nil {
		t.Skipf("no /proc/meminfo here: %v", err)
	}
	assert.Positive(t, mb)
}

func TestParseDevices(t *testing.T) {
	devs, err := ParseDevices("cuda:0:8192,cuda:1:4096, metal:0:16000")
	require.NoError(t, err)
	assert.Equal(t, []Device{{"cuda", 0, 8192}, {"cuda", 1, 4096}, {"metal", 0, 16000}}, devs)
	none, err := ParseDevices("")
	require.NoError(t, err)
	assert.Empty(t, none)
	for _, bad := range []string{"cuda", "cuda:0", "rocm:0:10", "cuda:x:10", "cuda:0:-1", "cuda:300:1", "cuda:0:1,cuda:0:2", "cpu:0:1", "cuda:0:1:2"} {
		_, err := ParseDevices(bad)
		assert.Error(t, err, bad)
	}
}

func TestRequiredMB(t *testing.T) {
	assert.Equal(t, int64(0), requiredMB(0))
	assert.Equal(t, int64(12), requiredMB(10<<20), "10 MiB × 1.2 = 12 MiB")
	assert.Equal(t, int64(2), requiredMB(1<<20+1), "rounds up")
	assert.Equal(t, int64(1229), requiredMB(1<<30), "1 GiB × 1.2 = 1228.8 MiB, rounded up")
}

func TestPreflight(t *testing.T) {
	h := &Hive{cfg: Config{FakeMemoryMB: 1000}, devices: []Device{{"cuda", 0, 8192}, {"cuda", 1, 100}}}
	const mib = 1 << 20
	cases := []struct {
		name    string
		size    int64
		backend api.Backend
		device  int
		code    api.Code // "" passes
		inMsg   []string
	}{
		{"S23 ram fits", 800 * mib, "cpu", 0, "", nil},
		{"S23 ram exactly fits", 1000 * mib * 10 / 12, "cpu", 0, "", nil},
		{"S24 ram too small", 900 * mib, "cpu", 0, api.CodeInsufficientRAM, []string{"need 1080 MB", "have 1000 MB"}},
		{"S25 cpu exists", 1, "cpu", 0, "", nil},
		{"cpu has one device", 1, "cpu", 1, api.CodeBackendUnavailable, []string{"cpu", "device 1"}},
		{"S26 cuda device missing", 1, "cuda", 2, api.CodeBackendUnavailable, []string{"cuda device 2", "cpu, cuda:0, cuda:1"}},
		{"S26 metal missing", 1, "metal", 0, api.CodeBackendUnavailable, []string{"metal"}},
		{"cuda vram too small", 200 * mib, "cuda", 1, api.CodeVRAMExhausted, []string{"cuda:1", "need 240 MB", "have 100 MB"}},
		{"cuda exists but no engine", 200 * mib, "cuda", 0, api.CodeBackendUnavailable, []string{"no cuda engine in this build"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := h.preflight(tc.size, "Q8_0", tc.backend, tc.device)
			if tc.code == "" {
				assert.Nil(t, err)
				return
			}
			require.NotNil(t, err)
			assert.Equal(t, tc.code, err.Code)
			for _, s := range tc.inMsg {
				assert.Contains(t, err.Message, s)
			}
			switch tc.code {
			case api.CodeInsufficientRAM, api.CodeVRAMExhausted:
				assert.Equal(t, requiredMB(tc.size), err.Details["required"])
				assert.Equal(t, smallerHint("Q8_0", requiredMB(tc.size), err.Details["available"].(int64)), err.Hint())
				assert.Contains(t, err.Hint(), "the model is Q8_0")
			case api.CodeBackendUnavailable:
				assert.Equal(t, tc.backend, err.Details["backend"])
				assert.Equal(t, http400, err.HTTPStatus())
			}
		})
	}
}

const http400 = 400

// TestSmallerHint: the hint of INSUFFICIENT_RAM and VRAM_EXHAUSTED names a
// real quantization smaller than the model's own (the largest that would
// fit, by bits per weight), or says that none would do.
func TestSmallerHint(t *testing.T) {
	cases := []struct {
		name       string
		quant      string
		need, have int64
		want       string
	}{
		{"Q8_0 to the next step", "Q8_0", 1080, 1000,
			"the model is Q8_0 (about 8.5 bits per weight); use a smaller quantization of it: Q6_K (about 6.6 bits per weight) would need about 839 MB"},
		{"Q8_0 down to Q4_K_M", "Q8_0", 1700, 1000,
			"the model is Q8_0 (about 8.5 bits per weight); use a smaller quantization of it: Q4_K_M (about 4.8 bits per weight) would need about 960 MB"},
		{"F16 to Q8_0", "F16", 2000, 1100,
			"the model is F16 (about 16 bits per weight); use a smaller quantization of it: Q8_0 (about 8.5 bits per weight) would need about 1063 MB"},
		{"Q4_K_M is never told to use Q4_K_M", "Q4_K_M", 1000, 900,
			"the model is Q4_K_M (about 4.8 bits per weight); use a smaller quantization of it: Q3_K_M (about 3.9 bits per weight) would need about 813 MB"},
		{"Q5_K_S skips the larger Q5_K_M", "Q5_K_S", 1000, 950,
			"the model is Q5_K_S (about 5.5 bits per weight); use a smaller quantization of it: Q4_K_M (about 4.8 bits per weight) would need about 873 MB"},
		{"Q4_K_M, nothing fits", "Q4_K_M", 1000, 100,
			"the model is Q4_K_M (about 4.8 bits per weight); even Q2_K (about 3 bits per weight) would need about 625 MB: use a smaller model (fewer parameters) or a node with more memory"},
		{"Q2_K is the smallest", "Q2_K", 1000, 900,
			"the model is Q2_K (about 3 bits per weight) and no common quantization is much smaller: use a smaller model (fewer parameters) or a node with more memory"},
		{"IQ3_XXS is barely larger than Q2_K", "IQ3_XXS", 1000, 990,
			"the model is IQ3_XXS (about 3.06 bits per weight) and no common quantization is much smaller: use a smaller model (fewer parameters) or a node with more memory"},
		{"unknown file type", "ftype(99)", 1000, 900,
			"the model's quantization ftype(99) is not one rbee knows the size of; use a smaller quantization (Q4_K_M, about 4.8 bits per weight, is a common choice), or a smaller model (fewer parameters) or a node with more memory"},
		{"no file type", "", 1000, 900,
			"the model's quantization is unknown; use a smaller quantization (Q4_K_M, about 4.8 bits per weight, is a common choice), or a smaller model (fewer parameters) or a node with more memory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, smallerHint(tc.quant, tc.need, tc.have))
		})
	}
	for _, q := range quantLadder {
		_, ok := quantBits[q]
		assert.True(t, ok, "%s has a size", q)
	}
}

// TestPreflightEndpoint: POST /v1/workers/preflight answers for a
// catalogued model without starting anything: the memory it needs when the
// checks pass, the preflight's error when they fail, MODEL_NOT_FOUND for a
// model not in the catalog.
func TestPreflightEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		memory int64
		status int
		code   api.Code
	}{{"fits", 1 << 20, 200, ""}, {"too little memory", 1, 507, api.CodeInsufficientRAM}} {
		t.Run(tc.name, func(t *testing.T) {
			th := startHive(t, func(c *Config) { c.FakeMemoryMB = tc.memory })
			path := tinyModel(t, "Q8_0", nil)
			body := `{"model_ref":"file:` + path + `","backend":"cpu","device":0}`
			status, e, _ := raw(t, "POST", th.url+"/v1/workers/preflight", testToken, body)
			assert.Equal(t, 404, status)
			require.NotNil(t, e)
			assert.Equal(t, api.CodeModelNotFound, e.Code, "not in the catalog yet")

			ref, perr := api.ParseModelRef("file:" + path)
			require.Nil(t, perr)
			_, rerr := th.resolveModel(t.Context(), ref)
			require.Nil(t, rerr)
			status, e, out := raw(t, "POST", th.url+"/v1/workers/preflight", testToken, body)
			assert.Equal(t, tc.status, status)
			if tc.code == "" {
				assert.Nil(t, e)
				assert.Contains(t, string(out), `"required_mb":`)
				assert.Contains(t, string(out), `"available_mb":1048576`)
			} else {
				require.NotNil(t, e)
				assert.Equal(t, tc.code, e.Code)
			}
			assert.Empty(t, th.list(t), "nothing was started")

			status, e, _ = raw(t, "POST", th.url+"/v1/workers/preflight", "", body)
			assert.Equal(t, 401, status, "the endpoint needs the hive's token")
			assert.NotNil(t, e)
		})
	}
}
