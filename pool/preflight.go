package pool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"rbee/api"
)

// Device is an accelerator the hive can place a worker on: a CUDA GPU or
// Apple's Metal device, with its free memory.
type Device struct {
	Backend string // api.BackendCUDA or api.BackendMetal
	Index   int
	VRAMMB  int64 // free memory in MiB
}

// String is "backend:index".
func (d Device) String() string { return d.Backend + ":" + strconv.Itoa(d.Index) }

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
		d := Device{Backend: parts[0]}
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
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("reading available memory: %w", err)
	}
	defer f.Close()
	kb, err := parseMemAvailable(f)
	if err != nil {
		return 0, err
	}
	return kb / 1024, nil
}

// parseMemAvailable finds "MemAvailable: N kB" in /proc/meminfo's text.
func parseMemAvailable(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("/proc/meminfo: unexpected MemAvailable line %q", sc.Text())
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("/proc/meminfo: unexpected MemAvailable line %q", sc.Text())
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("/proc/meminfo: %w", err)
	}
	return 0, errors.New("/proc/meminfo has no MemAvailable line")
}

// RAMFactor is how much memory a model needs beyond its file size (DESIGN §9).
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

const smallerQuantHint = "use a smaller quantization of the model (e.g. Q4_K_M instead of Q8_0)"

// preflight checks that the node can run a model of size bytes (quantized
// as quant) on backend/device: the backend exists, and the memory it would
// use is there. It returns BACKEND_UNAVAILABLE, INSUFFICIENT_RAM or
// VRAM_EXHAUSTED, or nil.
func (h *Hive) preflight(size int64, quant, backend string, device int) *api.Error {
	need := requiredMB(size)
	hint := smallerQuantHint
	if quant != "" {
		hint = "the model is " + quant + "; " + smallerQuantHint
	}
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
				With("required", need).With("available", have).With("model_size_bytes", size).WithHint(hint)
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
			With("required", need).With("available", dev.VRAMMB).With("model_size_bytes", size).With("device", dev.String()).WithHint(hint)
	}
	// The device is there and the model fits, but this build's workers run
	// the pure-Go CPU engine only: say so rather than pretend.
	return api.Errorf(api.CodeBackendUnavailable, "backend %s: no %s engine in this build yet (use --backend cpu)", backend, backend).
		With("backend", backend).With("device", device).With("available", h.available())
}

// available lists the node's backends and devices: "cpu", "cuda:0", …
func (h *Hive) available() []string {
	out := []string{api.BackendCPU}
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
