package pool

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/testutil"
)

// TestMain lets the test binary stand in for `rbee worker`: run as
// `pool.test worker --model M …` it becomes a fake worker whose behaviour
// comes from the file M.fake (JSON fakeBehaviour). Unit tests use it for
// what a real worker cannot be made to do on purpose (ignore SIGTERM, stay
// busy, exit early); scenario tests run the real rbee binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(fakeWorkerMain(os.Args[2:]))
	}
	// A fake worker built with -race would otherwise sleep a second at exit.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(testutil.Main(m)) // removes the rbee binary the scenario tests build
}

// fakeBehaviour scripts a fake worker.
type fakeBehaviour struct {
	ExitCode     int             `json:"exit_code"`     // exit at once with this status (when not 0)
	BusyPorts    []int           `json:"busy_ports"`    // exit 3 ("port P is in use") on these ports
	State        api.WorkerState `json:"state"`         // health state (default idle, after ready)
	IdleFor      Duration        `json:"idle_for"`      // last_activity this long ago
	Slots        int             `json:"slots"`         // slots_total (default 1)
	SlotsBusy    int             `json:"slots_busy"`    // slots_busy
	IgnoreAdmin  bool            `json:"ignore_admin"`  // accept admin shutdown but do not exit
	IgnoreTerm   bool            `json:"ignore_term"`   // ignore SIGTERM
	NoCallback   bool            `json:"no_callback"`   // never call back ready
	NoHealth     bool            `json:"no_health"`     // never listen
	LoadDelay    Duration        `json:"load_delay"`    // stay loading this long
	ListenDelay  Duration        `json:"listen_delay"`  // bind the port only after this long
	CrashAfter   Duration        `json:"crash_after"`   // exit 1 this long after start
	OtherID      string          `json:"other_id"`      // answer health as this worker id
	CallbackBody string          `json:"callback_body"` // a raw callback body instead of the right one
	CallbackAuth string          `json:"callback_auth"` // a bearer token instead of RBEE_API_KEY
}

// Duration is a time.Duration in JSON as a Go duration string.
type Duration time.Duration

// UnmarshalJSON parses "1h".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// MarshalJSON writes "1h".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func fakeWorkerMain(args []string) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	model := fs.String("model", "", "")
	ref := fs.String("model-ref", "", "")
	backend := fs.String("backend", "cpu", "")
	device := fs.Int("device", 0, "")
	host := fs.String("host", "127.0.0.1", "")
	port := fs.Int("port", 0, "")
	callback := fs.String("callback-url", "", "")
	id := fs.String("worker-id", "", "")
	if err := fs.Parse(args); err != nil {
		fmt.Println("fake worker:", err)
		return 2
	}
	var b fakeBehaviour
	if raw, err := os.ReadFile(*model + ".fake"); err == nil {
		if err := json.Unmarshal(raw, &b); err != nil {
			fmt.Println("fake worker: bad behaviour file:", err)
			return 2
		}
	}
	fmt.Printf("fake worker %s starting on port %d\n", *id, *port)
	if b.ExitCode != 0 {
		fmt.Println("fake worker: failing on purpose")
		return b.ExitCode
	}
	if slices.Contains(b.BusyPorts, *port) {
		fmt.Printf("port %d is in use\n", *port)
		return ExitPortInUse
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	exit := make(chan int, 1)
	go func() {
		for range sigs {
			fmt.Println("fake worker: SIGTERM")
			if !b.IgnoreTerm {
				exit <- 0
			}
		}
	}()
	if b.CrashAfter > 0 {
		time.AfterFunc(time.Duration(b.CrashAfter), func() { fmt.Println("fake worker: crashing"); exit <- 1 })
	}
	if b.NoHealth {
		return <-exit
	}
	time.Sleep(time.Duration(b.ListenDelay))
	l, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		fmt.Printf("port %d is in use\n", *port)
		return ExitPortInUse
	}
	start := time.Now()
	var loaded atomic.Bool
	healthID := *id
	if b.OtherID != "" {
		healthID = b.OtherID
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		st := api.StateLoading
		if loaded.Load() {
			st = api.StateIdle
			if b.State != "" {
				st = b.State
			}
		}
		slots := b.Slots
		if slots == 0 {
			slots = 1
		}
		fmt.Println("fake worker: health", st) // tests count the checks
		httpx.WriteJSON(w, 200, api.WorkerHealth{Status: "ok", Version: api.Version, WorkerID: healthID, ModelRef: *ref,
			State: st, SlotsTotal: slots, SlotsBusy: b.SlotsBusy, LastActivity: start.Add(-time.Duration(b.IdleFor))})
	})
	mux.HandleFunc("POST /v1/admin/shutdown", func(w http.ResponseWriter, r *http.Request) {
		if !httpx.BearerMatches(r, os.Getenv("RBEE_API_KEY")) {
			httpx.WriteError(w, r, api.ErrInvalidAPIKey)
			return
		}
		fmt.Println("fake worker: admin shutdown")
		w.WriteHeader(202)
		if !b.IgnoreAdmin {
			exit <- 0
		}
	})
	go func() { _ = http.Serve(l, mux) }()
	go func() {
		time.Sleep(time.Duration(b.LoadDelay))
		loaded.Store(true)
		if b.NoCallback {
			return
		}
		body := b.CallbackBody
		if body == "" {
			raw, _ := json.Marshal(api.ReadyCallback{WorkerID: *id, URL: "http://" + net.JoinHostPort(*host, strconv.Itoa(*port)),
				ModelRef: *ref, Backend: api.Backend(*backend), Device: *device})
			body = string(raw)
		}
		token := os.Getenv("RBEE_API_KEY")
		if b.CallbackAuth != "" {
			token = b.CallbackAuth
		}
		req, _ := http.NewRequest("POST", *callback, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println("fake worker: callback failed:", err)
			return
		}
		e := error(nil)
		if resp.StatusCode != 200 {
			e = httpx.ResponseError(resp)
		}
		resp.Body.Close()
		fmt.Println("fake worker: callback status", resp.StatusCode, e)
	}()
	code := <-exit
	fmt.Println("fake worker: exiting", code)
	return code
}
