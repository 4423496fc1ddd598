package pool

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"rbee/api"
	"rbee/internal/sysmem"
)

// Device is an accelerator the hive can place a worker on: a CUDA GPU or
// Apple's Metal device, with its free memory.
type Device struct {
	Backend api.Backend // api.BackendCUDA or api.BackendMetal
	Index   int
	VRAMMB  int64 // free memory in MiB
}

// String is "backend:index".
func (d Device) String() string { return string(d.Backend) + ":" + strconv.Itoa(d.Index) }

// ParseDevices parses a device list like "cuda:0:8192,cuda:1:8192"
// (backend:index:vram_mb), the hidden --fake-devices flag that stands in for
// GPUs in tests. An empty string is no devices.
func ParseDevices(s string) ([]Device, error) {
	var out []Device
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(item), ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("device %q: want backend:index:vram_mb (cuda:0:8192)", item)
		}
		d := Device{Backend: api.Backend(parts[0])}
		if d.Backend != api.BackendCUDA && d.Backend != api.BackendMetal {
			return nil, fmt.Errorf("device %q: backend must be cuda or metal", item)
		}
		var err error
		if d.Index, err = strconv.Atoi(parts[1]); err != nil || d.Index < 0 || d.Index > 255 {
			return nil, fmt.Errorf("device %q: index must be 0 to 255", item)
		}
		if d.VRAMMB, err = strconv.ParseInt(parts[2], 10, 64); err != nil || d.VRAMMB < 0 {
			return nil, fmt.Errorf("device %q: vram_mb must be a number of MiB", item)
		}
		if seen[d.String()] {
			return nil, fmt.Errorf("device %s is listed twice", d)
		}
		seen[d.String()] = true
		out = append(out, d)
	}
	return out, nil
}

// DetectDevices finds the node's accelerators: NVIDIA GPUs through
// nvidia-smi when it is installed, and the Metal device of an Apple silicon
// Mac. It never fails: a node without them has none.
func DetectDevices(ctx context.Context) []Device {
	var out []Device
	if runtime.GOOS == "darwin" && runtime.GOARCH == "arm64" {
		mb, _ := MemAvailableMB()
		out = append(out, Device{Backend: api.BackendMetal, Index: 0, VRAMMB: mb})
	}
	smi, err := exec.LookPath("nvidia-smi")
	if err != nil {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, smi, "--query-gpu=index,memory.free", "--format=csv,noheader,nounits").Output()
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		idx, free, ok := strings.Cut(line, ",")
		if !ok {
			continue
		}
		i, err1 := strconv.Atoi(strings.TrimSpace(idx))
		mb, err2 := strconv.ParseInt(strings.TrimSpace(free), 10, 64)
		if err1 == nil && err2 == nil {
			out = append(out, Device{Backend: api.BackendCUDA, Index: i, VRAMMB: mb})
		}
	}
	return out
}

// MemAvailableMB reads the node's available memory (MemAvailable of
// /proc/meminfo) in MiB.
func MemAvailableMB() (int64, error) {
	b, err := sysmem.Available()
	if err != nil {
		return 0, fmt.Errorf("reading available memory: %w", err)
	}
	return b / (1024 * 1024), nil
}

// RAMFactor is how much memory a model needs beyond its file size.
const RAMFactor = 1.2

// requiredMB is the memory a model file of size bytes needs, in MiB (rounded up).
func requiredMB(size int64) int64 {
	need := float64(size) * RAMFactor / (1 << 20)
	n := int64(need)
	if float64(n) < need {
		n++
	}
	return n
}

// Preflight reports whether a worker for req would pass the preflight now:
// the model is in the catalog (MODEL_NOT_FOUND otherwise) and the backend
// and memory checks pass (their error otherwise). Unlike Spawn it neither
// reads nor verifies the model file and starts nothing.
func (h *Hive) Preflight(ctx context.Context, req api.SpawnRequest) (api.PreflightResult, *api.Error) {
	if req.Backend == "" {
		req.Backend = api.BackendCPU
	}
	if err := validateSpawn(&req); err != nil {
		return api.PreflightResult{}, err
	}
	ref, _ := api.ParseModelRef(req.ModelRef)
	canon := ref.String()
	r, err := h.catalog.row(ctx, canon)
	if errors.Is(err, ErrNotInCatalog) {
		return api.PreflightResult{}, api.Errorf(api.CodeModelNotFound, "model %s is not in this node's catalog", canon).With("model_ref", canon)
	}
	if err != nil {
		return api.PreflightResult{}, catalogError(err, "read")
	}
	if e := h.preflight(r.SizeBytes, "", req.Backend, req.Device); e != nil {
		return api.PreflightResult{}, e
	}
	res := api.PreflightResult{RequiredMB: requiredMB(r.SizeBytes)}
	if req.Backend == api.BackendCPU {
		res.AvailableMB, _ = h.memAvailableMB()
	}
	return res, nil
}

// preflight checks that the node can run a model of size bytes (quantized
// as quant) on backend/device: the backend exists, and the memory it would
// use is there. It returns BACKEND_UNAVAILABLE, INSUFFICIENT_RAM or
// VRAM_EXHAUSTED, or nil.
func (h *Hive) preflight(size int64, quant string, backend api.Backend, device int) *api.Error {
	need := requiredMB(size)
	if backend == api.BackendCPU {
		if device != 0 {
			return api.Errorf(api.CodeBackendUnavailable, "backend cpu has only device 0, not device %d", device).
				With("backend", backend).With("device", device).With("available", h.available())
		}
		have, err := h.memAvailableMB()
		if err != nil {
			return api.Errorf(api.CodeInternal, "cannot tell the node's available memory: %v", err)
		}
		if need > have {
			return api.Errorf(api.CodeInsufficientRAM, "Insufficient RAM: need %d MB, have %d MB", need, have).
				With("required", need).With("available", have).With("model_size_bytes", size).WithHint(smallerHint(quant, need, have))
		}
		return nil
	}
	var dev *Device
	for i := range h.devices {
		if h.devices[i].Backend == backend && h.devices[i].Index == device {
			dev = &h.devices[i]
		}
	}
	if dev == nil {
		return api.Errorf(api.CodeBackendUnavailable, "backend %s device %d is not available on this node (it has %s)", backend, device, strings.Join(h.available(), ", ")).
			With("backend", backend).With("device", device).With("available", h.available())
	}
	if need > dev.VRAMMB {
		return api.Errorf(api.CodeVRAMExhausted, "Insufficient VRAM on %s: need %d MB, have %d MB", dev, need, dev.VRAMMB).
			With("required", need).With("available", dev.VRAMMB).With("model_size_bytes", size).With("device", dev.String()).
			WithHint(smallerHint(quant, need, dev.VRAMMB))
	}
	// The device is there and the model fits, but this build's workers run
	// the pure-Go CPU engine only: say so rather than pretend.
	return api.Errorf(api.CodeBackendUnavailable, "backend %s: no %s engine in this build yet (use --backend cpu)", backend, backend).
		With("backend", backend).With("device", device).With("available", h.available())
}

// quantBits is the approximate number of bits per weight of a whole GGUF
// file of each quantization (file types mix tensor types: a Q4_K_M file
// keeps some tensors in Q6_K), as llama.cpp's quantize tool reports them.
var quantBits = map[string]float64{
	"F32": 32, "F16": 16, "BF16": 16,
	"Q8_0": 8.5, "Q6_K": 6.6, "Q5_1": 6.0, "Q5_K_M": 5.7, "Q5_K_S": 5.5, "Q5_0": 5.5,
	"Q4_1": 5.0, "Q4_K_M": 4.8, "Q4_K_S": 4.6, "Q4_0": 4.5, "IQ4_NL": 4.5, "Q3_K_L": 4.3, "IQ4_XS": 4.25,
	"Q3_K_M": 3.9, "IQ3_M": 3.7, "Q3_K_S": 3.5, "IQ3_S": 3.44, "IQ3_XS": 3.3, "IQ3_XXS": 3.06,
	"Q2_K": 3.0, "Q2_K_S": 2.8, "IQ2_M": 2.7, "IQ2_S": 2.5, "IQ2_XS": 2.31, "IQ2_XXS": 2.06, "TQ2_0": 2.06,
	"IQ1_M": 1.75, "TQ1_0": 1.69, "IQ1_S": 1.56,
}

// quantLadder is what the hint suggests, largest first: the quantizations
// model repositories commonly publish.
var quantLadder = []string{"Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"}

// smallerFactor: a suggested quantization has at most this share of the
// model's bits per weight (a step of a few percent is not worth a hint).
const smallerFactor = 0.9

// smallerHint is the hint of a model that needs needMB of memory where
// haveMB is available: the largest common quantization, smaller than the
// model's own, whose file would fit (its need estimated from the bits per
// weight); or, when even the smallest would not fit or none is smaller, a
// smaller model or a node with more memory.
func smallerHint(quant string, needMB, haveMB int64) string {
	const elsewhere = "a smaller model (fewer parameters) or a node with more memory"
	bits, known := quantBits[quant]
	if !known {
		what := "the model's quantization is unknown"
		if quant != "" {
			what = "the model's quantization " + quant + " is not one rbee knows the size of"
		}
		return what + "; use a smaller quantization (Q4_K_M, about 4.8 bits per weight, is a common choice), or " + elsewhere
	}
	own := fmt.Sprintf("the model is %s (about %s bits per weight)", quant, bitsText(bits))
	var smallest string
	var smallestMB int64
	for _, q := range quantLadder {
		b := quantBits[q]
		if b > bits*smallerFactor {
			continue
		}
		est := int64(math.Ceil(float64(needMB) * b / bits))
		if est <= haveMB {
			return fmt.Sprintf("%s; use a smaller quantization of it: %s (about %s bits per weight) would need about %d MB", own, q, bitsText(b), est)
		}
		smallest, smallestMB = q, est
	}
	if smallest == "" {
		return own + " and no common quantization is much smaller: use " + elsewhere
	}
	return fmt.Sprintf("%s; even %s (about %s bits per weight) would need about %d MB: use %s", own, smallest, bitsText(quantBits[smallest]), smallestMB, elsewhere)
}

// bitsText is a bits-per-weight figure without needless digits ("8.5", "16", "4.25").
func bitsText(b float64) string { return strconv.FormatFloat(b, 'f', -1, 64) }

// available lists the node's backends and devices: "cpu", "cuda:0", …
func (h *Hive) available() []string {
	out := []string{string(api.BackendCPU)}
	for _, d := range h.devices {
		out = append(out, d.String())
	}
	return out
}

func (h *Hive) memAvailableMB() (int64, error) {
	if h.cfg.FakeMemoryMB > 0 {
		return h.cfg.FakeMemoryMB, nil
	}
	return MemAvailableMB()
}
